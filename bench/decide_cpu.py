"""CPU per decision in process: this checkout against another revision, alternately.

Each side runs in a child process that builds `nba serve`'s engine (embedded SQLite state,
pseudonymised ids, decision log; --honour-decision-time) and its gRPC servicer, and calls
NextBestAction with protobuf requests directly -- no network -- for distinct customers (those of
bench/serving.py, from the revision measured), after a warm-up; the child reports its CPU time
per decision. The reference revision is checked out in
a temporary git worktree and imported in place of this one. Rounds alternate, so that the ratio
survives the machine's speed moving.

    .venv/bin/python bench/decide_cpu.py --against HEAD~1 [--rounds 3] [--decisions 6000]
    .venv/bin/python bench/decide_cpu.py --profile        # this checkout, with a sampled profile
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(root: str, decisions: int, profile: bool) -> None:
    """Measure the checkout at ``root`` (run in a process of its own)."""
    sys.path.insert(0, root)
    import argparse as ap
    import time

    from bench.serving import requests
    from engine import cli, convert
    from engine.server import DecisionServicer

    class Context:  # what the servicer asks of a gRPC context
        def time_remaining(self):
            return None

        def peer(self):
            return "ipv4:127.0.0.1:1"

        def is_active(self):
            return True

    with tempfile.TemporaryDirectory(prefix="nba-decide-cpu-") as tmp:
        parser = ap.ArgumentParser()
        cli.add_commands(parser.add_subparsers())
        args = parser.parse_args(["serve", "--log-dir", f"{tmp}/logs", "--state-dir", f"{tmp}/state",
                                  "--honour-decision-time", "--seed", "1"])
        engine = cli.build_engine(args)
        servicer, context = DecisionServicer(engine), Context()
        for request in requests(300, first=10_000_000):
            servicer.NextBestAction(convert.request_to_proto(request), context)
        batch = [convert.request_to_proto(r) for r in requests(decisions)]
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.process_time()
        for message in batch:
            servicer.NextBestAction(message, context)
        cpu = time.process_time() - started
        if profile:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        engine.close()
    print(json.dumps({"cpu_ms": cpu / decisions * 1000}))


def measure(root: Path, decisions: int, profile: bool = False) -> float:
    done = subprocess.run([sys.executable, __file__, "--child", str(root), "--decisions", str(decisions),
                           *(["--profile"] if profile else [])], capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"the measurement of {root} failed:\n{done.stderr[-3000:]}")
    if profile:
        sys.stderr.write(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])["cpu_ms"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=None, metavar="REV", help="the reference revision (git)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decisions", type=int, default=6000, help="decisions measured per side and round")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of this checkout (slower)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.decisions, args.profile)
        return 0
    if args.against is None:
        print(f"this checkout: {measure(ROOT, args.decisions, args.profile):.3f} ms CPU per decision")
        return 0
    with tempfile.TemporaryDirectory(prefix="nba-reference-") as tmp:
        reference = Path(tmp) / "checkout"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(reference), args.against], cwd=ROOT,
                       check=True)
        try:
            ratios = []
            for r in range(args.rounds):
                ref, this = measure(reference, args.decisions), measure(ROOT, args.decisions)
                ratios.append(this / ref)
                print(f"round {r + 1}: {args.against} {ref:.3f} ms, this checkout {this:.3f} ms CPU per decision "
                      f"({this / ref:.3f}x)", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=ROOT, check=False)
    print(f"median ratio {statistics.median(ratios):.3f}x over {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
