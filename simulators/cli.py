"""The simulation commands of ``nba``: ``simulate``, ``demo`` (the main job, small), ``calibrate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.settings import ConfigError
from simulators.simulate import DEFAULT_POLICIES

POLICIES_HELP = (
    "comma-separated: engine, engine@STRUCTURE (the engine with another [model] structure: engine@funnel, "
    "engine@direct, so that two can run on one population), engine_grpc (the engine behind a real `nba serve`), rules, newsletter (the "
    "rules without incentives: the no-discount offer), random, no_contact, oracle, oracle_unbudgeted (the "
    "oracle not held to the incentive budgets), oracle_blind_TRAITS (the information bound: the oracle knowing "
    "TRAITS -- hour, affinity, organic, motivation, engagement joined by '+', or all -- only as well as the "
    "CRM record and the responses to its own decisions tell them), and diagnostics: engine_exact (the "
    "engine learning the exact expected value of each of its choices instead of the reward reported), "
    "observable_oracle (the best decisions from CRM data alone), observable_oracle_responses (the same, "
    "with the customers' responses); or package.module:factory for your own "
    f"(default: {','.join(DEFAULT_POLICIES)})")


def cmd_simulate(args) -> int:
    from simulators.simulate import simulate

    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    options = dict(scenario=args.scenario, customers=args.customers, days=args.days, policies=policies,
                   out=args.out, engine_url=args.engine_url, mlflow=not args.no_mlflow,
                   progress=not args.no_progress, redis_url=args.redis, engine_model=args.engine_model,
                   regret=args.regret, catalog_set=args.set, logs=not args.no_logs)
    if args.seeds is None:
        if args.workers is not None or args.ray_address is not None:
            raise ConfigError("--workers and --ray-address are for --seeds")
        print_simulation(simulate(seed=args.seed, **options))
        return 0
    from simulators.sweep import parse_seeds, seeds_table, sweep

    results = sweep(parse_seeds(args.seeds), workers=args.workers, ray_address=args.ray_address, **options)
    for result in results:
        print_simulation(result)
    print(f"\nExpected net value per seed (EUR), {len(results)} seeds:\n")
    print(seeds_table(results))
    return 0


def cmd_demo(args) -> int:
    from simulators.simulate import simulate

    print("Quick simulation of the default scenario: the engine against the marketer's rules, "
          "the same without incentives (newsletter), random, no contact and the oracle.\n", flush=True)
    result = simulate("default", customers=args.customers, days=args.days, seed=args.seed,
                      out=args.out, mlflow=True, progress=True)
    print_simulation(result)
    return 0


def cmd_calibrate(args) -> int:
    from simulators.calibration import TARGETS, calibrate, report

    figures = calibrate(args.scenario, customers=args.customers, seed=args.seed)
    print(report(figures))
    off = [k for k, (low, high, _) in TARGETS.items() if not low <= figures[k] <= high]
    return 1 if off else 0


def print_simulation(result: dict) -> None:
    from simulators.regret import table as regret_table
    from simulators.report import budget_table, open_rate_table, table

    meta = result["meta"]
    print(f"\nScenario {meta['scenario']}: {meta['customers']:,} customers, {meta['days']} days, "
          f"seed {meta['seed']} (net value = incremental, EUR)"
          + (f"; catalog set: {meta['catalog_set']}" if meta.get("catalog_set") else "") + "\n")
    print(table(result["results"]))
    opens = open_rate_table(result["results"])
    if opens:
        print("\nOpen rate by channel (deliveries in brackets), and at the rules' mix of channels:\n")
        print(opens)
    if any(result.get("budgets", {}).values()):
        print("\n" + budget_table(result["budgets"]))
    if result.get("regret"):
        print("\nExpected value of the oracle's choice and of each policy's, and what the gap is made of (EUR):\n")
        print(regret_table(result["regret"]))
    print(f"\nResults: {result['out'] / 'results.json'}")
    for path in result["artifacts"][1:]:
        print(f"Plot:    {path}")
    if result.get("logs"):
        print(f"Engine decision and outcome logs (DSJSON): {result['logs']}")
    if result["mlflow_run_id"]:
        print(f"MLflow run {result['mlflow_run_id']} in mlruns/ (see it with: "
              ".venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_simulate(sub)
    demo = sub.add_parser("demo", help="a quick simulation of the default scenario (the main job)")
    demo.add_argument("--customers", type=int, default=10_000)
    demo.add_argument("--days", type=int, default=42)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.set_defaults(func=cmd_demo)

    cal = sub.add_parser("calibrate", help="check a scenario against the figures from the field")
    cal.add_argument("--scenario", default="default")
    cal.add_argument("--customers", type=int, default=20_000)
    cal.add_argument("--seed", type=int, default=1)
    cal.set_defaults(func=cmd_calibrate)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("simulate", help="run policies against the customer simulator")
    sim.add_argument("--scenario", default="default",
                     help="scenario file, or a shipped one: default, cold_start, high_fatigue, ...")
    sim.add_argument("--customers", type=int, default=None, help="customers (default: the scenario's)")
    sim.add_argument("--days", type=int, default=None, help="simulated days (default: the scenario's)")
    sim.add_argument("--policies", default=",".join(DEFAULT_POLICIES), help=POLICIES_HELP)
    seeds = sim.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=1)
    seeds.add_argument("--seeds", default=None, metavar="SEEDS",
                       help="several seeds at once, each a Ray task, e.g. 1-4 or 1,3,7: seed S writes OUT/seed_S "
                            "and gives what --seed S gives; a table of the seeds follows")
    sim.add_argument("--workers", type=int, default=None,
                     help="with --seeds: CPUs of the local Ray (default: every core)")
    sim.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="with --seeds: run on this Ray cluster (e.g. ray://head:10001 or auto) instead of a local "
                          "Ray; its nodes need the project installed")
    sim.add_argument("--out", type=Path, default=Path("runs/latest"), help="output directory")
    sim.add_argument("--engine-url", default=None,
                     help="for engine_grpc: a running `nba serve --honour-decision-time` "
                          "(default: start one)")
    sim.add_argument("--redis", default=None, metavar="URL",
                     help="the in-process engine keeps caps, budgets and pending decisions in this "
                          "Redis (default: in memory)")
    sim.add_argument("--engine-model", type=Path, default=None, metavar="PATH",
                     help="the in-process engine starts from this trained model (an `nba train` "
                          "model directory or a VW model file) instead of an empty one")
    sim.add_argument("--regret", action="store_true",
                     help="split each policy's expected regret against the oracle's choice by what it got wrong "
                          "(missed or needless contact, offer, channel, send slot)")
    sim.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                     help="change a catalog key for this run, on top of the scenario's catalog_changes "
                          "(repeatable; the value is TOML: --set exploration.epsilon=0.05 "
                          "--set 'exploration.slot_value=\"best\"')")
    sim.add_argument("--no-mlflow", action="store_true", help="do not record an MLflow run")
    sim.add_argument("--no-logs", action="store_true",
                     help="do not keep the in-process engine's DSJSON logs (~8 KB a decision) "
                          "in OUT/logs")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=cmd_simulate)
