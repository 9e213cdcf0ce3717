"""Train a candidate VW policy from logged decisions, offline.

The candidate is the same kind of model the server runs (``engine.value_model.ValueModel``:
``--cb_adf`` over the logged contexts, read with VW's own DSJSON parser), trained on the
decisions of a time range -- usually the earlier part of the logs, so it can be evaluated on
the later part it never saw.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from engine.catalog import MODEL_STRUCTURES, Catalog, ModelSettings
from engine.value_model import ValueModel
from training.dataset import iter_decisions
from training.logs import ReadReport

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
          progress: bool = False) -> TrainResult:
    """Learn a VW model from the decisions logged in [start, end), ``params.passes`` times
    over them in log order."""
    settings = params.settings(catalog)
    model = ValueModel(settings, version="candidate")
    started = time.perf_counter()
    examples, report = 0, ReadReport()
    for k in range(params.passes):
        pass_report = ReadReport() if k else report
        for d in tqdm(iter_decisions(log_dir, catalog, pass_report, start=start, end=end),
                      disable=not progress, unit="decision", unit_scale=True,
                      desc=f"training, pass {k + 1}/{params.passes}"):
            d.learn_into(model)
            examples += 1
    if examples == 0:
        raise ValueError(f"{log_dir}: no decisions to train on ({report})")
    return TrainResult(model, settings, examples // params.passes, examples,
                       time.perf_counter() - started, report)
