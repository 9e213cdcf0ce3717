"""A fingerprint of what the project decides: run small seeded simulations and an off-policy
evaluation, and print a SHA-256 of each table and log they produce.

Two commits with the same fingerprint decide, log and estimate the same, byte for byte: run it
before and after a change that should not change behaviour (a refactoring) and compare.

    .venv/bin/python bench/fingerprint.py            # prints one line per artefact
    .venv/bin/python bench/fingerprint.py --json out.json

What is left out, because it names where, when or how fast rather than what: file paths, the
catalog's version string (it hashes the catalog file, comments included), the log files' names
and each policy's run time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
NBA = [sys.executable, "-m", "nba.cli"] if (ROOT / "nba" / "cli.py").exists() else \
    [sys.executable, "-m", "engine.cli"]

RUNS = {
    "default": ["--scenario", "default", "--customers", "3000", "--days", "28", "--seed", "1", "--regret",
                "--policies", "engine,engine_exact,rules,newsletter,random,no_contact,oracle,oracle_unbudgeted,"
                              "oracle_blind_all,observable_oracle_responses"],
    "cold_start": ["--scenario", "cold_start", "--customers", "2000", "--days", "21", "--seed", "2",
                   "--policies", "engine,rules,oracle"],
    "tight_budget": ["--scenario", "tight_budget", "--customers", "2000", "--days", "21", "--seed", "2",
                     "--policies", "engine,rules,oracle"],
    "high_fatigue": ["--scenario", "high_fatigue", "--customers", "2000", "--days", "21", "--seed", "2",
                     "--policies", "engine,rules,oracle"],
    "set_epsilon": ["--scenario", "default", "--customers", "2000", "--days", "21", "--seed", "3",
                    "--policies", "engine", "--set", "exploration.epsilon=0.05"],
}


# How long each policy took: the machine's, not the project's.
TIMINGS = ("seconds", "decisions_per_minute")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def results_digest(path: Path) -> str:
    results = json.loads(path.read_text())
    for metrics in results["policies"].values():
        for timing in TIMINGS:
            metrics.pop(timing, None)
    kept = {k: results[k] for k in ("customers", "days", "seed", "policies", "budgets", "daily_net_value")}
    return digest(json.dumps(kept, sort_keys=True).encode())


def log_digest(log_dir: Path, kind: str) -> str:
    lines = []
    for path in sorted(log_dir.glob(f"{kind}-*.jsonl")):
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            meta = record.get("_nba")
            if isinstance(meta, dict):
                meta.pop("catalog", None)
            lines.append(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    joined = b"\n".join(lines)
    return f"{digest(joined)} ({len(lines)} lines)"


def run(out: Path) -> dict[str, str]:
    prints = {}
    for name, args in RUNS.items():
        target = out / name
        subprocess.run([*NBA, "simulate", *args, "--out", str(target), "--no-mlflow", "--no-progress"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        prints[f"{name}/results.json"] = results_digest(target / "results.json")
        if (target / "logs").exists():
            prints[f"{name}/decisions"] = log_digest(target / "logs", "decisions")
            prints[f"{name}/outcomes"] = log_digest(target / "logs", "outcomes")
    evaluation = subprocess.run(
        [*NBA, "evaluate", "--logs", str(out / "default" / "logs"), "--policy", "rules", "--policy", "uniform",
         "--json", "--no-mlflow", "--no-progress"], check=True, cwd=ROOT, capture_output=True)
    prints["default/evaluate.json"] = digest(evaluation.stdout)
    return prints


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="also write the fingerprint to this file")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this directory")
    args = parser.parse_args()
    if args.keep:
        prints = run(args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            prints = run(Path(tmp))
    for key, value in prints.items():
        print(f"{key:32s} {value}")
    if args.json:
        args.json.write_text(json.dumps(prints, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
