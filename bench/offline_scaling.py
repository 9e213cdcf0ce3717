"""`nba evaluate` and offline training in one process, on a local Ray of 1 worker and of 2
workers, alternately: the wall time of each whole run (Ray's start and stop included) and
whether the results are identical.

The logs are the engine's in the simulator (`nba simulate --policies engine`, default scenario,
seeded). `nba evaluate` evaluates three policies (logged, rules, uniform) with the default 20
refits of the reward model, reading the logs (`--no-cache`), then reading their Parquet cache
(made once beforehand, untimed); training is `training.train.train` (what `nba train` runs
before it evaluates) reading the logs, one pass over every decision, in a process of its own.

Each run is fixed cost F (Ray's start and stop, the processes and their imports, the estimators)
plus work W that splits over the workers: from the medians T1 (1 worker) and T2 (2 workers),
W = 2 (T1 - T2) and F = 2 T2 - T1. An evaluation's phases (setup: the cache and Ray's start;
learning the reward model; scoring; stop) are read from its log line and printed too.

    .venv/bin/python bench/offline_scaling.py [--customers 12000] [--days 63] [--rounds 2]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBA = [sys.executable, "-m", "nba.cli"]
MODES = {"one process": [], "Ray, 1 worker": ["--workers", "1"], "Ray, 2 workers": ["--workers", "2"]}


TRAIN = ("import hashlib, sys; from pathlib import Path; from engine.catalog import load_catalog; "
         "from training.train import train; w = int(sys.argv[2]) or None; "
         "r = train(Path(sys.argv[1]), load_catalog(), workers=w); "
         "print(r.decisions, hashlib.sha256(r.model.serialize()).hexdigest())")


PHASES = re.compile(r"evaluated \d+ decisions: (.*)$", re.M)


def phases(stderr: str) -> dict[str, float]:
    """An evaluation's phases and their seconds, from its log line (``training.evaluate``)."""
    match = PHASES.search(stderr)
    if match is None:
        return {}
    return {name: float(seconds) for name, seconds in
            (part.rsplit(" ", 2)[:2] for part in match.group(1).split(", "))}


def run(what: str, logs: Path, extra: list[str]) -> tuple[float, str, dict[str, float]]:
    """(seconds, output, the phases' seconds) of one evaluation or training in a process of its own."""
    if what.startswith("evaluate"):
        command = [*NBA, "evaluate", "--logs", str(logs), "--policy", "logged", "--policy", "rules", "--policy",
                   "uniform", "--json", "--no-mlflow", "--no-progress", *extra,
                   *(["--no-cache"] if what == "evaluate" else [])]
    else:
        command = [sys.executable, "-c", TRAIN, str(logs), extra[1] if extra else "0"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout, phases(done.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=12000)
    parser.add_argument("--days", type=int, default=63)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nba-offline-") as out:
        subprocess.run([*NBA, "simulate", "--policies", "engine", "--customers", str(args.customers), "--days",
                        str(args.days), "--seed", "1", "--no-mlflow", "--no-progress", "--out", out], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        logs = Path(out) / "logs"
        decisions = sum(1 for f in logs.glob("decisions-*.jsonl") for _ in f.open("rb"))
        print(f"logs: {decisions:,} decisions ({args.customers:,} customers x {args.days} days, the engine)")
        sys.path.insert(0, str(ROOT))
        from engine.catalog import load_catalog
        from training.cache import build

        build(logs, load_catalog())
        identical, estimates = True, set()
        for what in ("evaluate", "evaluate from the cache", "train"):
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            parts: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            outputs: set[str] = set()
            for r in range(args.rounds):
                row = []
                for mode, extra in MODES.items():
                    seconds, output, phase = run(what, logs, extra)
                    times[mode].append(seconds)
                    parts[mode].append(phase)
                    outputs.add(output)
                    row.append(f"{mode} {seconds:.1f} s")
                print(f"{what}, round {r + 1}: " + ", ".join(row), flush=True)
            median = {mode: statistics.median(t) for mode, t in times.items()}
            if what.startswith("evaluate"):
                for mode in MODES:
                    names = parts[mode][0]
                    print(f"{what}, {mode}, median of each phase: " + ", ".join(
                        f"{name} {statistics.median(p[name] for p in parts[mode]):.1f} s" for name in names))
            print(f"{what}, median over {args.rounds} rounds: " + ", ".join(f"{m} {s:.1f} s" for m, s in median.items()))
            print(f"{what}: speed-up of 2 workers over 1: {median['Ray, 1 worker'] / median['Ray, 2 workers']:.2f}x; "
                  f"over one process: {median['one process'] / median['Ray, 2 workers']:.2f}x; results identical in "
                  f"every mode and round: {len(outputs) == 1}", flush=True)
            one, two = median["Ray, 1 worker"], median["Ray, 2 workers"]
            print(f"{what}: fixed cost F = 2 T2 - T1 = {2 * two - one:.1f} s, work that splits W = 2 (T1 - T2) = "
                  f"{2 * (one - two):.1f} s", flush=True)
            identical &= len(outputs) == 1
            estimates |= outputs if what.startswith("evaluate") else set()
        print(f"the same estimates from the logs and from the cache: {len(estimates) == 1}")
    return 0 if identical and len(estimates) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
