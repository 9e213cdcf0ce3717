"""`nba simulate --seeds` on a local Ray of 1 and of 2 workers, alternately: the wall time of a
seed sweep and its speed-up. Each run is the same sweep (the results are seeded); the workers
are CPUs of the Ray the command starts.

    .venv/bin/python bench/sweep_scaling.py [--seeds 1-4] [--customers 5000] [--days 63] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(workers: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="nba-sweep-") as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nba.cli", "simulate", "--seeds", args.seeds, "--workers", str(workers),
                        "--customers", str(args.customers), "--days", str(args.days), "--policies", args.policies,
                        "--no-mlflow", "--no-logs", "--no-progress", "--out", out], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-4")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=63)
    parser.add_argument("--policies", default="engine,rules")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ratios = []
    for r in range(args.rounds):
        one, two = run(1, args), run(2, args)
        ratios.append(one / two)
        print(f"round {r + 1}: --seeds {args.seeds} ({args.customers:,} customers x {args.days} days, {args.policies}): "
              f"1 worker {one:.0f} s, 2 workers {two:.0f} s ({one / two:.2f}x)", flush=True)
    print(f"median speed-up with 2 workers: {statistics.median(ratios):.2f}x over {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
