"""Several seeds of one simulation at once, each a Ray task (``training.parallel``).

``nba simulate --seeds 1-4`` runs ``simulate`` once per seed, each in a task of its own, on a
Ray started here with ``--workers`` CPUs (default: every core) or on an existing cluster
(``--ray-address``, whose nodes have the project installed). A seed's task shares nothing with
the others and the simulation is seeded, so seed S writes ``OUT/seed_S/`` and gives the same
results as ``nba simulate --seed S``. The MLflow runs, one per seed, are recorded here once the
tasks end, so that one process writes the local tracking store.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from engine.settings import ConfigError
from training.parallel import run_all

SEEDS_FORMAT = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
MAX_SEEDS = 10_000


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"1-4"``, ``"1,3,7"`` or ``"1-3,9"`` -> the seeds in order, each once."""
    spec = text.replace(" ", "")
    if not SEEDS_FORMAT.match(spec):
        raise ConfigError(f"--seeds {text!r}: expected seeds such as 1-4, 1,3,7 or 1-3,9")
    seeds: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if high < low:
            raise ConfigError(f"--seeds {text!r}: the range {part} runs backwards")
        if high - low + len(seeds) >= MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r}: more than {MAX_SEEDS:,} seeds")
        seeds += [s for s in range(low, high + 1) if s not in seeds]
    return tuple(seeds)


def _one_seed(kwargs: dict) -> dict:
    from simulators.simulate import simulate

    return simulate(**kwargs, mlflow=False, progress=False)


def sweep(seeds: tuple[int, ...], *, out: Path, workers: int | None = None, ray_address: str | None = None,
          mlflow: bool = True, progress: bool = True, **kwargs) -> list[dict]:
    """``simulate(seed=S, out=out / f"seed_{S}", **kwargs)`` for each seed, as Ray tasks; the
    results in the order of ``seeds``. ``workers``: CPUs of the Ray started here (default:
    every core; ignored with ``ray_address``)."""
    from simulators.scenario import load_scenario, parse_catalog_settings
    from simulators.simulate import check_policies, record_mlflow

    if not seeds:
        raise ConfigError("--seeds: no seed to run")
    if kwargs.get("redis_url"):
        raise ConfigError("--seeds runs seeds at once, and --redis would give them one keyspace: run the seeds "
                          "one at a time with --seed")
    # Mistakes in the scenario or the policies are reported before any task starts.
    load_scenario(kwargs.get("scenario", "default"), parse_catalog_settings(kwargs.get("catalog_set") or []))
    check_policies(kwargs.get("policies", ()))
    calls = [{**kwargs, "seed": s, "out": out / f"seed_{s}"} for s in seeds]
    ordered = run_all(_one_seed, calls, workers, ray_address, progress and "simulating seeds")
    for result in ordered:
        result["mlflow_run_id"] = record_mlflow(result) if mlflow else None
    return ordered


def seeds_table(results: list[dict]) -> str:
    """Each policy's expected net value per seed and their mean, and its mean share of the
    oracle's expected value."""
    from simulators.report import _aligned

    seeds = [r["meta"]["seed"] for r in results]
    rows = []
    for name in results[0]["results"]:
        values = [r["results"][name]["expected_net_value"] for r in results]
        shares = [r["results"][name].get("expected_oracle_share") for r in results]
        known = all(isinstance(x, float) and not math.isnan(x) for x in shares)
        share = f"{sum(shares) / len(shares):.1%}" if known else "-"
        rows.append([name] + [f"{v:,.0f}" for v in values] + [f"{sum(values) / len(values):,.0f}", share])
    return _aligned(["policy"] + [f"seed {s}" for s in seeds] + ["mean", "mean exp. share"], rows)
