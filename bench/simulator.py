"""Simulator throughput: customer-decisions per minute.

  * the simulator alone, with the vectorised baselines (rules, random, no_contact, oracle);
  * with the engine in the loop (in process: every decision goes through DecisionEngine).

    .venv/bin/python bench/simulator.py [--customers 200000] [--days 28]
                                        [--engine-customers 20000] [--engine-days 14]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.pipeline import DecisionEngine  # noqa: E402
from simulators.policies import EnginePolicy, MarketerRules, NoContact, Oracle, RandomPolicy  # noqa: E402
from simulators.runner import Simulation  # noqa: E402
from simulators.scenario import load_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--engine-customers", type=int, default=20_000)
    parser.add_argument("--engine-days", type=int, default=14)
    args = parser.parse_args()

    scenario = load_scenario(args.scenario)
    sim = Simulation(scenario, customers=args.customers, days=args.days, seed=1)
    total_decisions = total_seconds = 0.0
    print(f"simulator alone: {args.customers:,} customers x {args.days} days")
    for policy in (MarketerRules(), RandomPolicy(1), NoContact(), Oracle(scenario.catalog.constraints)):
        run = sim.run(policy)
        rate = run.totals["decisions"] / run.seconds * 60
        total_decisions += run.totals["decisions"]
        total_seconds += run.seconds
        print(f"  {policy.name:10s} {run.totals['decisions']:>10,.0f} decisions in {run.seconds:6.1f} s "
              f"= {rate:>12,.0f} customer-decisions/min")
    print(f"  {'all':10s} {total_decisions:>10,.0f} decisions in {total_seconds:6.1f} s "
          f"= {total_decisions / total_seconds * 60:>12,.0f} customer-decisions/min")

    esim = Simulation(scenario, customers=args.engine_customers, days=args.engine_days, seed=1)
    engine = DecisionEngine(scenario.catalog, seed=1, honour_request_time=True)
    run = esim.run(EnginePolicy.in_process(engine))
    print(f"engine in the loop: {args.engine_customers:,} customers x {args.engine_days} days: "
          f"{run.totals['decisions']:,.0f} decisions in {run.seconds:.1f} s "
          f"= {run.totals['decisions'] / run.seconds * 60:,.0f} customer-decisions/min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
