"""Logged decisions as training and evaluation data.

``iter_decisions`` streams the joined logs (``training.logs.joined_with_times``: the server's
join and reward definition) as ``LoggedDecision`` objects, optionally only those made in a time
range -- so a candidate is trained on earlier logs and evaluated on later ones. Nothing is held
in memory but the outcomes, so a pass over millions of decisions runs in constant memory; each
pass re-reads the files. ``load_dataset`` keeps them all, with the arrays (reward, logged
probability, chosen action, number of feasible actions) as NumPy.

A decision's context is the VW JSON text the server scored (``context``), its feasible actions
are the logged action labels in scoring order (``offer/channel/slot`` or ``no_contact``), and
``line`` is the DSJSON line with the joined cost, as VW learns it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from engine.catalog import Catalog
from engine.decision_log import log_files
from training.logs import ReadReport, Select, _parse_time, joined_with_times

_TIMESTAMP = re.compile(rb'"Timestamp":"([^"]+)"')


# A probability no log holds: the place of the chosen action's probability in ``chosen_line``.
_SENTINEL = 1.2345678901234567e-300
_SENTINEL_TEXT = orjson.dumps(_SENTINEL).decode()


@dataclass(frozen=True)
class LoggedDecision:
    """One joined decision. Read from the logs, ``record`` holds the parsed DSJSON record and
    the rest is derived from it when first asked for; read from the cache (``training.cache``)
    ``record`` is None and what is asked for comes from the cache's columns, the full record
    being parsed (``parsed``) only when nothing else serves."""

    event_id: str
    time: dt.datetime
    actions: tuple[str, ...]      # feasible action labels, in the order they were scored
    chosen: int                   # index of the logged action in ``actions``
    probability: float            # logged probability of the chosen action
    reward: float                 # joined reward (catalog's definition)
    record: dict | None           # the parsed DSJSON record (``c`` is the context)
    log_line: int = -1            # its line number over the decision log's files

    @functools.cached_property
    def parsed(self) -> dict:
        return self.record if self.record is not None else orjson.loads(self.line)

    @functools.cached_property
    def context(self) -> str:
        """The context as VW JSON text, exactly as scored."""
        return orjson.dumps(self.parsed["c"]).decode()

    @functools.cached_property
    def line(self) -> str:
        """The DSJSON line with its joined cost, as VW's DSJSON parser learns it."""
        if self.record is None:
            raise ValueError(f"decision {self.event_id} was read from the cache without its joined line")
        return orjson.dumps(self.record).decode()

    @functools.cached_property
    def opened(self) -> bool:
        """Whether an OPENED outcome was attributed to the decision."""
        return bool(self.parsed["_nba"].get("opened", False))

    @property
    def contacted(self) -> bool:
        return self.actions[self.chosen] != "no_contact"

    @functools.cached_property
    def customer_id(self) -> str:
        """The customer the decision was made for (the event id for logs that lack it)."""
        return self.parsed["_nba"].get("customer_id") or self.event_id

    @functools.cached_property
    def customer(self) -> dict[str, float]:
        """The customer features of the request (namespace U)."""
        return self.parsed["c"].get("U", {})

    @functools.cached_property
    def logged(self) -> tuple[list | None, list | None]:
        """The logged action ids and probabilities (DSJSON ``a`` and ``p``), as logged."""
        return self.parsed.get("a"), self.parsed.get("p")

    @functools.cached_property
    def chosen_line(self) -> str:
        """The DSJSON line (with the joined cost) of the shared context and the logged action
        alone, its probability left to ``chosen_action_line`` to fill in."""
        record = self.parsed
        context = dict(record["c"])
        context["_multi"] = [context["_multi"][self.chosen]]
        line = {k: v for k, v in record.items() if k not in ("c", "a", "p", "_nba")}
        line.update({"_labelIndex": 0, "_label_Action": 1, "_label_probability": _SENTINEL, "a": [1],
                     "p": [_SENTINEL], "c": context})
        return orjson.dumps(line).decode()


def chosen_action_line(d: LoggedDecision, probability: float) -> str:
    """``d.chosen_line`` logged with ``probability``."""
    return d.chosen_line.replace(_SENTINEL_TEXT, orjson.dumps(probability).decode())


def iter_decisions(log_dir: str | Path, catalog: Catalog, report: ReadReport | None = None,
                   start: dt.datetime | None = None, end: dt.datetime | None = None,
                   outcome_report: ReadReport | None = None, select: Select | None = None,
                   files: list[Path] | None = None) -> Iterator[LoggedDecision]:
    """Joined decisions made in [start, end) (either bound optional), in log order; ``select``
    and ``files``: of these lines, of these files only (``training.logs.joined_with_times``)."""
    for record, when, number in joined_with_times(log_dir, catalog, report, outcome_report, start, end, select,
                                                  files):
        meta = record["_nba"]
        yield LoggedDecision(record["EventId"], when, tuple(meta["actions"]), record["_labelIndex"],
                             float(record["_label_probability"]), meta["reward"], record, number)


@dataclass
class Dataset:
    """Every decision of a range, kept, with the arrays estimators need."""

    decisions: list[LoggedDecision]
    report: ReadReport

    @property
    def reward(self) -> np.ndarray:
        return np.array([d.reward for d in self.decisions])

    @property
    def pscore(self) -> np.ndarray:
        return np.array([d.probability for d in self.decisions])

    @property
    def chosen(self) -> np.ndarray:
        return np.array([d.chosen for d in self.decisions], dtype=int)

    @property
    def n_actions(self) -> np.ndarray:
        return np.array([len(d.actions) for d in self.decisions], dtype=int)

    def __len__(self) -> int:
        return len(self.decisions)

    def __iter__(self):
        return iter(self.decisions)


def load_dataset(log_dir: str | Path, catalog: Catalog, start: dt.datetime | None = None,
                 end: dt.datetime | None = None) -> Dataset:
    report = ReadReport()
    return Dataset(list(iter_decisions(log_dir, catalog, report, start, end)), report)


def decision_times(log_dir: str | Path) -> np.ndarray:
    """Decision times (seconds since the epoch) of every decision line, read fast (no JSON
    parsing): enough to choose a time split."""
    times = []
    for path in log_files(log_dir, "decisions"):
        with path.open("rb") as handle:
            for raw in handle:
                m = _TIMESTAMP.search(raw, 0, 600)
                if m is None:
                    continue
                try:
                    times.append(_parse_time(m.group(1).decode()).timestamp())
                except ValueError:
                    continue
    return np.array(times)


def split_time(log_dir: str | Path, train_fraction: float) -> dt.datetime:
    """The time before which ``train_fraction`` of the logged decisions were made."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must be in (0, 1), got {train_fraction}")
    times = np.sort(decision_times(log_dir))
    if len(times) < 2:
        raise ValueError(f"{log_dir}: fewer than two decisions logged; nothing to split")
    cut = times[min(int(len(times) * train_fraction), len(times) - 1)]
    return dt.datetime.fromtimestamp(cut, dt.timezone.utc)
