"""Several seeds of one simulation at once, each a Ray task (``as_completed``, which the
off-policy validation's seeds use too).

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
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from engine.settings import ConfigError

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


def as_completed(function: Callable[[dict], object], calls: list[dict], workers: int | None = None,
                 ray_address: str | None = None, progress: str | bool = False) -> Iterator[tuple[int, object]]:
    """``function(call)`` for each of ``calls``, each a Ray task of one CPU (``function`` must be
    importable by the workers: a module's top-level function); yields (the call's index, its
    result) as each ends. A task's exception is raised here as it was raised there. The Ray is
    started here with ``workers`` CPUs (default: every core) and stopped at the end, unless one
    is running in this process already; ``ray_address``: an existing cluster's instead.
    ``progress``: a progress bar with this description."""
    import ray

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address, num_cpus=None if ray_address else workers, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(function)
        index = {task.remote(call): i for i, call in enumerate(calls)}
        waiting = list(index)
        with tqdm(total=len(calls), disable=not progress, desc=progress or None) as bar:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                bar.update()
                yield index[done[0]], result
    finally:
        if started_here:
            ray.shutdown()


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
    results = dict(as_completed(_one_seed, calls, workers, ray_address, progress and "simulating seeds"))
    ordered = [results[i] for i in range(len(seeds))]
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
