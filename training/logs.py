"""Read the server's logs and join outcomes to decisions, offline.

The join is the server's: outcomes attach to their decision by event id, only inside the
attribution window, a repeated outcome_id counts once, and the reward comes from
``engine.rewards.net_reward`` with the catalog's reward definition. The result is DSJSON lines
whose ``_label_cost`` is the joined cost, ready for VW's own DSJSON parser.

Corrupt or partial lines (truncated JSON after a crash, a missing or out-of-range probability)
are skipped and counted, never fatal.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from engine.catalog import Catalog
from engine.decision_log import log_files
from engine.domain import OutcomeType
from engine.rewards import net_reward, was_opened


@dataclass
class ReadReport:
    """What reading a log found: good lines and skipped ones by reason."""

    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_lines: list | None = None  # a list: (line number, reason) of each skip is kept in it too
    line: int = -1                     # the line being read

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1
        if self.skipped_lines is not None:
            self.skipped_lines.append((self.line, reason))

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        return f"{self.read} lines read, skipped: {skipped}"


def _parse_time(text: str) -> dt.datetime:
    """A logged UTC time, e.g. 2026-01-05T06:00:00.000000Z (ValueError/TypeError otherwise)."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"time without a UTC offset: {text!r}")
    return when


# Which lines a reader parses: select(line number over all the files, the raw line) -> bool.
Select = Callable[[int, bytes], bool]


def read_jsonl(paths: list[Path], report: ReadReport, select: Select | None = None) -> Iterator[tuple[int, dict]]:
    """(line number over all ``paths``, record) of each JSON object; ``select`` (optional)
    picks the lines read, the others are neither parsed nor counted."""
    number = -1
    for path in paths:
        with path.open("rb") as handle:
            for raw in handle:
                number += 1
                if select is not None and not select(number, raw):
                    continue
                report.line = number
                if not raw.endswith(b"\n"):
                    report.skip("truncated last line")
                    continue
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError:  # also raised for invalid UTF-8
                    report.skip("invalid JSON")
                    continue
                if not isinstance(record, dict):
                    report.skip("not a JSON object")
                    continue
                yield number, record


def _decision_time(record: dict, report: ReadReport) -> dt.datetime | None:
    """The decision's time if the record is a usable decision, else None (and counted)."""
    try:
        p = record["_label_probability"]
        index = record["_labelIndex"]
        actions = record["c"]["_multi"]
        meta = record["_nba"]
        decided = _parse_time(record["Timestamp"])
        record["EventId"], meta["offer_cost"], meta["contact_cost"], meta["action"]["no_contact"]
    except (KeyError, TypeError, ValueError):
        report.skip("missing field")
        return None
    if not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        report.skip("probability missing or out of (0, 1]")
        return None
    if not isinstance(index, int) or not 0 <= index < len(actions):
        report.skip("chosen index out of range")
        return None
    labels = meta.get("actions")
    if not isinstance(labels, list) or len(labels) != len(actions):
        report.skip("action labels missing or not one per action")
        return None
    return decided


def read_outcomes(log_dir: str | Path, report: ReadReport | None = None
                  ) -> dict[str, list[tuple[str, OutcomeType, float, dt.datetime]]]:
    """Outcomes by event id: (outcome_id, type, value, time), first report of an id only."""
    report = report if report is not None else ReadReport()
    by_event: dict[str, list] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for _, record in read_jsonl(log_files(log_dir, "outcomes"), report):
        try:
            key = (record["EventId"], record["OutcomeId"])
            item = (record["OutcomeId"], OutcomeType(record["Type"]), float(record["Value"]),
                    _parse_time(record["Time"]))
        except (KeyError, TypeError, ValueError):
            report.skip("outcome: missing or invalid field")
            continue
        if key in seen:
            report.skip("outcome: repeated outcome_id")
            continue
        seen.add(key)
        report.read += 1
        by_event[key[0]].append(item)
    return by_event


def joined_decisions(log_dir: str | Path, catalog: Catalog, report: ReadReport | None = None,
                     outcome_report: ReadReport | None = None) -> Iterator[dict]:
    """Decision records with ``_label_cost`` set to the joined cost (and ``_nba.reward``)."""
    for record, _, _ in joined_with_times(log_dir, catalog, report, outcome_report):
        yield record


def joined_with_times(log_dir: str | Path, catalog: Catalog, report: ReadReport | None = None,
                      outcome_report: ReadReport | None = None, start: dt.datetime | None = None,
                      end: dt.datetime | None = None, select: Select | None = None,
                      files: list[Path] | None = None) -> Iterator[tuple[dict, dt.datetime, int]]:
    """(joined record, decision time, line number) of the decisions made in [start, end),
    either bound optional; decisions outside it are counted as skipped. ``select``: only these
    lines (``read_jsonl``). ``files``: of these decision files only (default: every one of
    ``log_dir``; line numbers count from the first given)."""
    report = report if report is not None else ReadReport()
    outcomes = read_outcomes(log_dir, outcome_report)
    window = catalog.attribution_window
    for number, record in read_jsonl(log_files(log_dir, "decisions") if files is None else files, report, select):
        decided = _decision_time(record, report)
        if decided is None:
            continue
        if (start is not None and decided < start) or (end is not None and decided >= end):
            report.skip("outside the time range")
            continue
        report.read += 1
        meta = record["_nba"]
        attributed = [(kind, value) for _, kind, value, when in outcomes.get(record["EventId"], ())
                      if decided <= when <= decided + window]
        contacted = not meta["action"]["no_contact"]
        reward = net_reward(catalog.reward, attributed, contacted, meta["offer_cost"],
                            meta["contact_cost"])
        record["_label_cost"] = -reward
        meta["reward"] = reward
        meta["opened"] = was_opened(attributed)
        yield record, decided, number
