"""bench/learning_curve.py: each policy's share of the reference, per campaign and per third of
the run, from the regret breakdown of an nba simulate --regret run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def results(chosen: dict[str, list[float]]) -> dict:
    return {"scenario": "default", "customers": 100, "days": 42, "seed": 1,
            "regret": {name: {"by_opportunity": [{"chosen": v} for v in values]} for name, values in chosen.items()}}


def run(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/learning_curve.py", str(path), *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_shares_per_campaign_and_per_third(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results({"oracle_blind_all": [100, 100, 50, 50, 20, 20],
                                        "engine": [50, 100, 25, 50, 20, 0]})))
    done = run(path, "--plot", str(tmp_path / "curve.png"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:3] == ["1", "100", "50"] and "(50%)" in line for line in lines)
    assert any(line.split()[:3] == ["6", "20", "0"] and "(0%)" in line for line in lines)
    third = {" ".join(line.split()[:2]): line for line in lines if line.strip().startswith(("campaigns", "all"))}
    assert "150 (75.0%)" in third["campaigns 1-2"]
    assert "75 (75.0%)" in third["campaigns 3-4"]
    assert "20 (50.0%)" in third["campaigns 5-6"]
    assert "245 (72.1%)" in third["all 6"]
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_says_what_is_missing(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"scenario": "default", "customers": 10, "days": 7, "seed": 1}))
    done = run(path)
    assert done.returncode != 0 and "--regret" in done.stderr
    path.write_text(json.dumps(results({"engine": [1.0]})))
    done = run(path)
    assert done.returncode != 0 and "'oracle_blind_all' is not among the run's policies: engine" in done.stderr
    done = run(tmp_path / "absent.json")
    assert done.returncode != 0 and "absent.json: cannot read the results" in done.stderr
