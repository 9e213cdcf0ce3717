"""nba simulate --seeds: seeds as tasks on a local Ray of two workers give what each seed gives
run alone; mistakes are refused before any task starts."""

from __future__ import annotations

import math

import pytest

from engine.settings import ConfigError
from simulators.simulate import simulate
from simulators.sweep import parse_seeds, seeds_table, sweep

TIMINGS = {"seconds", "decisions_per_minute"}
SMALL = dict(scenario="default", customers=300, days=7, policies=("rules", "engine", "oracle"), logs=False,
             plots=False)


def test_seeds_are_ranges_and_lists_in_order_each_once():
    assert parse_seeds("1-4") == (1, 2, 3, 4)
    assert parse_seeds("3,1,2-3") == (3, 1, 2)
    assert parse_seeds(" 7 ") == (7,)
    for bad in ("", "1-", "a", "4-2", "1;2", "1-1000000000"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def without_timings(result: dict) -> dict:
    """Each policy's metrics but its run time (NaN as None, so that equal results compare equal)."""
    return {name: {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in m.items() if k not in TIMINGS}
            for name, m in result["results"].items()}


def test_two_seeds_on_two_ray_workers_give_what_each_seed_gives_alone(tmp_path):
    swept = sweep((2, 1), out=tmp_path / "sweep", workers=2, mlflow=False, progress=False, **SMALL)
    assert [r["meta"]["seed"] for r in swept] == [2, 1]
    for result in swept:
        seed = result["meta"]["seed"]
        alone = simulate(seed=seed, out=tmp_path / f"alone_{seed}", mlflow=False, progress=False, **SMALL)
        assert without_timings(result) == without_timings(alone)
        assert (tmp_path / "sweep" / f"seed_{seed}" / "results.json").exists()
    assert without_timings(swept[0]) != without_timings(swept[1])  # the seeds differ
    table = seeds_table(swept)
    assert table.splitlines()[0].split()[:3] == ["policy", "seed", "2"] and "oracle" in table


def test_mistakes_are_refused_before_any_task(tmp_path):
    with pytest.raises(ConfigError, match="--redis"):
        sweep((1, 2), out=tmp_path, redis_url="redis://127.0.0.1:1", **SMALL)
    with pytest.raises(ValueError, match="nonsense"):
        sweep((1, 2), out=tmp_path, **{**SMALL, "policies": ("rules", "nonsense")})
    with pytest.raises(ConfigError, match="--workers"):
        sweep((1,), out=tmp_path, workers=0, **SMALL)
    assert not list(tmp_path.iterdir())
