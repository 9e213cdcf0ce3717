"""Parse once: the joined decisions of a log directory, cached as Parquet.

Reading the logs means parsing every DSJSON line (~5 KB, ~70 actions each) and joining its
outcomes; an evaluation reads them twice (reward model, then scoring) and each training pass
once more. The first read with the cache on writes what those passes use -- per decision its
log line, event id, time, customer, actions, chosen index and probability, joined reward, the
joined DSJSON line, the context as scored, the logged probabilities and the reward model's
chosen-action line -- to ``<log dir>/.nba-cache/<key>.parquet``; later reads take the columns
and parse nothing but the small customer features.

The key is a SHA-256 of what the join depends on: every decision and outcome file's name, size
and modification time (a log still being written, rotated or pruned gives another key), the
catalog's reward definition and attribution window, and this format's version. A file under
another key is never read, and is deleted when a new one is written; a file is written to a
temporary name and renamed, so a crash leaves none or a whole one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from engine.catalog import Catalog
from engine.decision_log import log_files
from training.dataset import LoggedDecision, iter_decisions
from training.logs import ReadReport, Select

FORMAT = 1
DIRECTORY = ".nba-cache"
ROWS_PER_GROUP = 20_000

SCHEMA = pa.schema([
    ("log_line", pa.int64()), ("event_id", pa.string()), ("time", pa.timestamp("us", tz="UTC")),
    ("customer_id", pa.string()), ("actions", pa.list_(pa.string())), ("chosen", pa.int32()),
    ("probability", pa.float64()), ("reward", pa.float64()), ("opened", pa.bool_()),
    ("customer", pa.string()), ("logged_ids", pa.list_(pa.int64())), ("logged_p", pa.list_(pa.float64())),
    ("line", pa.large_string()), ("context", pa.large_string()), ("chosen_line", pa.large_string()),
])


def cache_key(log_dir: str | Path, catalog: Catalog) -> str:
    files = [(p.name, st.st_size, st.st_mtime_ns) for p in log_files(log_dir, "decisions") + log_files(log_dir, "outcomes")
             for st in [p.stat()]]
    what = [FORMAT, repr(catalog.reward), catalog.attribution_window.total_seconds(), files]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


def cache_path(log_dir: str | Path, catalog: Catalog) -> Path:
    return Path(log_dir) / DIRECTORY / f"{cache_key(log_dir, catalog)}.parquet"


def _add(columns: dict[str, list], d: LoggedDecision) -> None:
    ids, probs = d.logged
    numeric = type(ids) is list and type(probs) is list and len(ids) == len(probs)
    for name, value in (("log_line", d.log_line), ("event_id", d.event_id), ("time", d.time),
                        ("customer_id", d.customer_id), ("actions", list(d.actions)), ("chosen", d.chosen),
                        ("probability", d.probability), ("reward", d.reward), ("opened", d.opened),
                        ("customer", orjson.dumps(d.customer).decode()), ("logged_ids", ids if numeric else None),
                        ("logged_p", probs if numeric else None), ("line", d.line), ("context", d.context),
                        ("chosen_line", d.chosen_line)):
        columns[name].append(value)


def _table(columns: dict[str, list]) -> pa.Table:
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in SCHEMA], schema=SCHEMA)


def build(log_dir: str | Path, catalog: Catalog) -> tuple[Path, bool]:
    """The cache of ``log_dir`` under ``catalog``: (its path, whether it was written now)."""
    path = cache_path(log_dir, catalog)
    if path.exists():
        return path, False
    path.parent.mkdir(exist_ok=True)
    report, outcome_report = ReadReport(skipped_lines=[]), ReadReport()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
            columns: dict[str, list] = {f.name: [] for f in SCHEMA}
            for d in iter_decisions(log_dir, catalog, report, outcome_report=outcome_report):
                _add(columns, d)
                if len(columns["log_line"]) == ROWS_PER_GROUP:
                    writer.write_table(_table(columns))
                    columns = {f.name: [] for f in SCHEMA}
            if columns["log_line"] or not report.read:
                writer.write_table(_table(columns))
            writer.add_key_value_metadata({"skipped": json.dumps(report.skipped_lines)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    for other in path.parent.glob("*.parquet"):
        if other != path:
            other.unlink(missing_ok=True)
    return path, True


# What each use reads besides the columns every decision has: the joined line (training), or
# what an evaluation asks for (the reward model's line, the context, the customer, the logged
# probabilities).
LIGHT = ("log_line", "event_id", "time", "actions", "chosen", "probability", "reward", "customer_id", "opened")
FIELDS = {"train": ("line",), "evaluate": ("context", "chosen_line", "customer", "logged_ids", "logged_p"),
          "all": ("line", "context", "chosen_line", "customer", "logged_ids", "logged_p")}


def cached_decisions(path: Path, report: ReadReport | None = None, start: dt.datetime | None = None,
                     end: dt.datetime | None = None, select: Select | None = None,
                     use: str = "all") -> Iterator[LoggedDecision]:
    """The decisions of a cache (``build``), as ``iter_decisions`` gives them from the logs:
    those made in [start, end) of the lines ``select`` picks, and ``report`` counting as reading
    the logs would have. ``select`` sees, for a decision, its event id as a one-field JSON
    object (``{"EventId":"..."}``), and for a line that held none, b"". ``use``: "train" reads
    the joined lines only, "evaluate" what an evaluation asks for, "all" both (the columns not
    read are not there to ask for)."""
    report = report if report is not None else ReadReport()
    source = pq.ParquetFile(path)
    for number, reason in json.loads(source.metadata.metadata[b"skipped"]):
        if select is None or select(number, b""):
            report.skip(reason)
    fields = FIELDS[use]
    for batch in source.iter_batches(batch_size=4096, columns=[*LIGHT, *fields]):
        keys = batch.select(["log_line", "event_id", "time"]).to_pydict()
        keep = []
        for i, (number, when) in enumerate(zip(keys["log_line"], keys["time"])):
            if select is not None and not select(number, orjson.dumps({"EventId": keys["event_id"][i]})):
                continue
            if (start is not None and when < start) or (end is not None and when >= end):
                report.skip("outside the time range")
                continue
            keep.append(i)
        columns = batch.take(pa.array(keep, pa.int64())).to_pydict()
        for i in range(len(keep)):
            report.read += 1
            d = LoggedDecision(columns["event_id"][i], columns["time"][i], tuple(columns["actions"][i]),
                               columns["chosen"][i], columns["probability"][i], columns["reward"][i], None,
                               columns["log_line"][i])
            d.__dict__.update({name: columns[name][i] for name in ("customer_id", "opened", *fields)
                               if name not in ("customer", "logged_ids", "logged_p")})
            if "customer" in fields:
                d.__dict__.update(customer=orjson.loads(columns["customer"][i]),
                                  logged=(columns["logged_ids"][i], columns["logged_p"][i]))
            yield d


def decisions(log_dir: str | Path, catalog: Catalog, cache: Path | None, report: ReadReport | None = None,
              start: dt.datetime | None = None, end: dt.datetime | None = None,
              select: Select | None = None, use: str = "all") -> Iterator[LoggedDecision]:
    """The joined decisions from ``cache`` (a ``build``; ``use`` as ``cached_decisions``) when
    given, else from the logs."""
    if cache is not None:
        return cached_decisions(cache, report, start, end, select, use)
    return iter_decisions(log_dir, catalog, report, start, end, select=select)
