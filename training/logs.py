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
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.catalog import Catalog
from engine.decision_log import log_files
from engine.domain import OutcomeType
from engine.rewards import net_reward


@dataclass
class ReadReport:
    """What reading a log found: good lines and skipped ones by reason."""

    read: int = 0
    skipped: Counter = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        return f"{self.read} lines read, skipped: {skipped}"


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def read_jsonl(paths: list[Path], report: ReadReport) -> Iterator[dict]:
    for path in paths:
        with path.open("rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    report.skip("truncated last line")
                    continue
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    report.skip("invalid JSON")
                    continue
                if not isinstance(record, dict):
                    report.skip("not a JSON object")
                    continue
                yield record


def _valid_decision(record: dict, report: ReadReport) -> bool:
    try:
        p = record["_label_probability"]
        index = record["_labelIndex"]
        actions = record["c"]["_multi"]
        meta = record["_nba"]
        _parse_time(record["Timestamp"])
        record["EventId"], meta["offer_cost"], meta["contact_cost"], meta["action"]["no_contact"]
    except (KeyError, TypeError, ValueError):
        report.skip("missing field")
        return False
    if not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        report.skip("probability missing or out of (0, 1]")
        return False
    if not isinstance(index, int) or not 0 <= index < len(actions):
        report.skip("chosen index out of range")
        return False
    return True


def read_outcomes(log_dir: str | Path, report: ReadReport | None = None
                  ) -> dict[str, list[tuple[str, OutcomeType, float, dt.datetime]]]:
    """Outcomes by event id: (outcome_id, type, value, time), first report of an id only."""
    report = report if report is not None else ReadReport()
    by_event: dict[str, list] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for record in read_jsonl(log_files(log_dir, "outcomes"), report):
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
    report = report if report is not None else ReadReport()
    outcomes = read_outcomes(log_dir, outcome_report)
    window = catalog.attribution_window
    for record in read_jsonl(log_files(log_dir, "decisions"), report):
        if not _valid_decision(record, report):
            continue
        report.read += 1
        meta = record["_nba"]
        decided = _parse_time(record["Timestamp"])
        attributed = [(kind, value) for _, kind, value, when in outcomes.get(record["EventId"], ())
                      if decided <= when <= decided + window]
        contacted = not meta["action"]["no_contact"]
        reward = net_reward(catalog.reward, attributed, contacted, meta["offer_cost"],
                            meta["contact_cost"])
        record["_label_cost"] = -reward
        meta["reward"] = reward
        yield record
