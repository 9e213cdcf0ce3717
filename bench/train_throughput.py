"""Offline training throughput and the wall time of train + evaluate on N logged decisions.

Logs come from the engine exploring uniformly in the simulator (default scenario, window
attribution: ``simulators.ope.validation_scenario``, as in bench/ope_validation.py). To reach
``--decisions`` without simulating them all, the base logs are copied with event ids made
unique per copy (same contexts, actions and outcomes: the work per decision is the same).
Then: ``train`` (one pass, the candidate settings of bench/ope_validation.py) on the first
70 % by time and ``evaluate_logs`` (cross-fitted reward model + scoring of the candidate,
rules and uniform) on the rest -- both timed.

    .venv/bin/python bench/train_throughput.py [--decisions 1000000] [--base-customers 20000] [--workers 2]

``--workers N``: train and evaluate on a local Ray of N CPUs (``nba train --workers``), started
once for both and included in the time.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.ope import log_uniform, validation_scenario  # noqa: E402
from simulators.runner import Simulation  # noqa: E402
from training.dataset import split_time  # noqa: E402
from training.evaluate import evaluate_logs  # noqa: E402
from training.parallel import ray_session  # noqa: E402
from training.target_policies import ModelPolicy, Rules, Uniform  # noqa: E402
from training.train import TrainParams, train  # noqa: E402

EVENT = re.compile(rb'"EventId":"([^"]+)"')


def replicate(base: Path, out: Path, copies: int) -> None:
    for path in sorted(base.glob("*.jsonl")):
        data = path.read_bytes()
        for k in range(copies):
            renamed = EVENT.sub(lambda m: b'"EventId":"' + m.group(1) + b"-%d\"" % k, data)
            (out / path.name.replace(".jsonl", f"-{k:04d}.jsonl")).write_bytes(renamed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--base-customers", type=int, default=20_000)
    parser.add_argument("--base-weeks", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="on a local Ray of this many CPUs")
    args = parser.parse_args()
    scenario = validation_scenario()
    catalog = scenario.catalog
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    try:
        base = work / "base"
        t = time.perf_counter()
        log_uniform(Simulation(scenario, customers=args.base_customers, days=7 * args.base_weeks, seed=5),
                    base, seed=5)
        n_base = sum(1 for p in base.glob("decisions-*.jsonl") for _ in p.open("rb"))
        copies = max(1, -(-args.decisions // n_base))
        logs = work / "logs"
        logs.mkdir()
        replicate(base, logs, copies)
        size = sum(p.stat().st_size for p in logs.glob("*.jsonl")) / 1e9
        print(f"logs: {n_base:,} simulated decisions x {copies} copies = {n_base * copies:,} decisions, "
              f"{size:.1f} GB (made in {time.perf_counter() - t:.0f} s)", flush=True)
        cut = split_time(logs, 0.7)
        t0 = time.perf_counter()
        with ray_session(args.workers) if args.workers else contextlib.nullcontext():
            result = train(logs, catalog, TrainParams(cb_type="mtr", learning_rate=0.02, power_t=0.0), end=cut,
                           progress=True, workers=args.workers)
            trained = time.perf_counter() - t0
            candidate = ModelPolicy("candidate", result.model, catalog.exploration)
            evaluation = evaluate_logs(logs, catalog, [candidate, Rules(), Uniform()], start=cut, progress=True,
                                       workers=args.workers)
        total = time.perf_counter() - t0
        print(f"train: {result.decisions:,} decisions in {trained:.0f} s = {result.examples_per_second:,.0f} "
              f"decisions/s (each ~60 actions)")
        print(f"evaluate: {evaluation.n:,} decisions, 3 policies, in {evaluation.seconds:.0f} s = "
              f"{evaluation.n / evaluation.seconds:,.0f} decisions/s")
        where = f"on a local Ray of {args.workers} CPUs, its start included" if args.workers else "in one process"
        print(f"train + evaluate on {result.decisions + evaluation.n:,} logged decisions, {where}: {total:.0f} s "
              f"({total / 60:.1f} min)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
