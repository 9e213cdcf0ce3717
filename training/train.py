"""Train a candidate VW policy from logged decisions, offline.

The candidate is the same kind of model the server runs (``engine.value_model.ValueModel``:
``--cb_adf`` over the logged contexts, read with VW's own DSJSON parser), trained on the
decisions of a time range -- usually the earlier part of the logs, so it can be evaluated on
the later part it never saw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.catalog import MODEL_STRUCTURES, Catalog, ModelSettings
from engine.value_model import ValueModel
from engine.decision_log import log_files
from training.cache import build, decisions
from training.dataset import iter_decisions
from training.logs import ReadReport
from training.parallel import ray_session

CB_TYPES = ("mtr", "dm", "ips", "dr")


@dataclass(frozen=True)
class TrainParams:
    """Offline training settings; None = the catalog's model setting."""

    passes: int = 1
    learning_rate: float | None = None
    interactions: tuple[str, ...] | None = None
    cb_type: str | None = None
    bits: int | None = None
    power_t: float | None = None
    importance_weighted: bool | None = None
    structure: str | None = None

    def settings(self, catalog: Catalog) -> ModelSettings:
        if self.passes < 1:
            raise ValueError(f"passes must be at least 1, got {self.passes}")
        if self.cb_type is not None and self.cb_type not in CB_TYPES:
            raise ValueError(f"cb_type must be one of {', '.join(CB_TYPES)}, got {self.cb_type!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.structure is not None and self.structure not in MODEL_STRUCTURES:
            raise ValueError(f"structure must be one of {', '.join(MODEL_STRUCTURES)}, got {self.structure!r}")
        if self.power_t is not None and not 0 <= self.power_t <= 1:
            raise ValueError(f"power_t must be from 0 to 1, got {self.power_t}")
        for pair in self.interactions or ():
            if len(pair) != 2 or not pair.isalpha():
                raise ValueError(f"interaction {pair!r} must be two namespace letters, e.g. UO")
        base = catalog.model
        settings = dataclasses.replace(
            base,
            cb_type=self.cb_type or base.cb_type,
            learning_rate=self.learning_rate if self.learning_rate is not None else base.learning_rate,
            interactions=tuple(self.interactions) if self.interactions is not None else base.interactions,
            bits=self.bits or base.bits,
            power_t=self.power_t if self.power_t is not None else base.power_t,
            importance_weighted=(self.importance_weighted if self.importance_weighted is not None
                                 else base.importance_weighted),
            structure=self.structure or base.structure)
        if settings.structure != "direct":
            raise ValueError(f"structure {settings.structure!r} learns online only (nba serve, nba simulate); "
                             "training from the logs makes the 'direct' structure: pass --structure direct")
        if not settings.importance_weighted and settings.cb_type != "mtr":
            raise ValueError(f"importance weights can only be turned off for cb_type mtr, not {settings.cb_type!r}")
        return settings

    def as_params(self, catalog: Catalog) -> dict:
        s = self.settings(catalog)
        return {"passes": self.passes, "learning_rate": s.learning_rate, "cb_type": s.cb_type,
                "interactions": ",".join(s.interactions), "bits": s.bits, "power_t": s.power_t,
                "importance_weighted": s.importance_weighted, "structure": s.structure}


@dataclass
class TrainResult:
    model: ValueModel
    settings: ModelSettings
    decisions: int           # decisions in the training range
    examples: int            # decisions learned, over all passes
    seconds: float
    report: ReadReport

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else float("nan")


def train(log_dir: str | Path, catalog: Catalog, params: TrainParams = TrainParams(),
          start: dt.datetime | None = None, end: dt.datetime | None = None,
          progress: bool = False, workers: int | None = None, ray_address: str | None = None,
          cache: bool = False) -> TrainResult:
    """Learn a VW model from the decisions logged in [start, end), ``params.passes`` times
    over them in log order. ``workers`` or ``ray_address``: the logs are read, joined and made
    into DSJSON lines by Ray tasks, ranges of the log each, a few ranges ahead of the learning
    here, which takes them in log order: the same model. ``cache``: read the decisions from the
    log directory's Parquet cache (``training.cache``), made first if none matches the logs; then
    there is nothing left to parse, and no Ray is started (shipping the lines costs more)."""
    settings = params.settings(catalog)
    model = ValueModel(settings, version="candidate")
    on_ray = (workers is not None or ray_address is not None) and not cache
    started = time.perf_counter()
    examples, report = 0, ReadReport()
    cache_file = build(log_dir, catalog)[0] if cache else None
    with ray_session(workers, ray_address) if on_ray else contextlib.nullcontext():
        for k in range(params.passes):
            pass_report = ReadReport() if k else report
            lines = (_lines_on_ray(log_dir, catalog, pass_report, start, end) if on_ray else
                     (d.line for d in decisions(log_dir, catalog, cache_file, pass_report, start, end,
                                                use="train")))
            for line in tqdm(lines, disable=not progress, unit="decision", unit_scale=True,
                             desc=f"training, pass {k + 1}/{params.passes}"):
                model.learn_dsjson(line)
                examples += 1
    if examples == 0:
        raise ValueError(f"{log_dir}: no decisions to train on ({report})")
    return TrainResult(model, settings, examples // params.passes, examples,
                       time.perf_counter() - started, report)


def _joined_lines(call: tuple) -> tuple[list[str], ReadReport]:
    """A Ray task: the DSJSON lines, with their joined costs, of the decisions in some files."""
    log_dir, catalog, start, end, files = call
    report = ReadReport()
    lines = [d.line for d in iter_decisions(log_dir, catalog, report, start, end, files=files)]
    return lines, report


def _lines_on_ray(log_dir, catalog: Catalog, report: ReadReport, start, end) -> Iterator[str]:
    """The joined decision lines in log order, made by Ray tasks (``_joined_lines``), each of a
    run of log files (the logs rotate at 64 MiB) of about equal size, at most two per CPU in
    flight so that the object store holds a few runs, not the logs."""
    import ray

    files = log_files(log_dir, "decisions")
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    runs = max(1, min(len(files), 4 * cpus))
    sizes = np.cumsum([p.stat().st_size for p in files]) if files else np.zeros(0)
    cuts = [0, *(int(np.searchsorted(sizes, sizes[-1] * r / runs)) + 1 for r in range(1, runs)), len(files)]
    groups = [files[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    task = ray.remote(num_cpus=1)(_joined_lines)
    calls = iter((log_dir, catalog, start, end, group) for group in groups)
    pending = [task.remote(call) for call in itertools.islice(calls, 2 * cpus)]
    while pending:
        lines, part = ray.get(pending.pop(0))
        pending += [task.remote(call) for call in itertools.islice(calls, 1)]
        report.read += part.read
        report.skipped.update(part.skipped)
        yield from lines
