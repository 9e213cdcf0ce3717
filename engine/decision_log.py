"""Append-only JSON-lines logs: DSJSON decisions and outcomes, rotated by size.

Each record is written with a single ``write`` system call on a file opened ``O_APPEND``, so a
crash can at worst leave the last line truncated; earlier lines are never rewritten. Every
process start opens a new file (name: ``<prefix>-<UTC start>-<pid>-<seq>.jsonl``), so a
truncated tail is never appended to, and several processes can share one directory.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


SYNC_MODES = ("always", "interval", "never")
FILE_MODE = 0o640


class JsonlLog:
    """One log (a prefix) in a directory, rotated at ``max_bytes``.

    ``sync`` says when lines reach the disk, like Redis's appendfsync: ``always`` (an fsync
    after every line: nothing answered is ever lost, at the cost of a disk flush per decision),
    ``interval`` (an fsync about every second: a machine crash loses at most the last second)
    or ``never`` (the system writes back when it wants, typically within 30 s; a crash of the
    process alone loses nothing, since every line is written before the call returns).
    ``retention``: files of this prefix older than ``max_age_days`` or beyond ``max_total_bytes``
    (the oldest first) are deleted at each rotation. Files are created mode 0640.
    """

    def __init__(self, directory: str | Path, prefix: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 sync: str = "never", max_age_days: float = 0.0, max_total_bytes: int = 0):
        if max_bytes < 1024:
            raise ValueError(f"max_bytes must be at least 1024, got {max_bytes}")
        if sync not in SYNC_MODES:
            raise ValueError(f"log sync must be one of {list(SYNC_MODES)}, got {sync!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.sync = sync
        self.max_age_days, self.max_total_bytes = max_age_days, max_total_bytes
        self._lock = threading.Lock()
        self._stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._seq = 0
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self.path: Path | None = None
        self._stop = threading.Event()
        if sync == "interval":
            threading.Thread(target=self._sync_every_second, name=f"nba-{prefix}-sync", daemon=True).start()

    def _open_next(self) -> None:
        if self._fd is not None:
            if self.sync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
        self._seq += 1
        self.path = self.directory / f"{self.prefix}-{self._stamp}-{os.getpid()}-{self._seq:04d}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self._size = os.fstat(self._fd).st_size
        self._apply_retention()

    def _apply_retention(self) -> None:
        """Delete this prefix's files past their age, then the oldest beyond the total size;
        never the open file, nor one written in the last minute (another process's)."""
        if not self.max_age_days and not self.max_total_bytes:
            return
        now = time.time()
        files = [(p, p.stat()) for p in log_files(self.directory, self.prefix) if p != self.path]
        total = sum(st.st_size for _, st in files) + self._size
        for path, st in files:  # oldest first
            old = self.max_age_days and now - st.st_mtime > self.max_age_days * 86400
            over = self.max_total_bytes and total > self.max_total_bytes
            if (old or over) and now - st.st_mtime > 60:
                path.unlink(missing_ok=True)
                total -= st.st_size

    def append(self, record: dict[str, Any] | str) -> None:
        """Append one record (a dict, or a line of JSON text already encoded)."""
        if not isinstance(record, str):
            record = json.dumps(record, separators=(",", ":"), default=_json_default)
        data = (record + "\n").encode()
        with self._lock:
            if self._fd is None or (self._size and self._size + len(data) > self.max_bytes):
                self._open_next()
            os.write(self._fd, data)
            self._size += len(data)
            if self.sync == "always":
                os.fsync(self._fd)
            else:
                self._dirty = True

    def _sync_every_second(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._fd is not None and self._dirty:
                    os.fsync(self._fd)
                    self._dirty = False

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._fd is not None:
                if self.sync != "never":
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None


def log_files(directory: str | Path, prefix: str) -> list[Path]:
    """The files of one log in write order (names sort by start time, pid, sequence)."""
    return sorted(Path(directory).glob(f"{prefix}-*.jsonl"))


@functools.lru_cache(maxsize=64)
def _action_ids(n: int) -> list[str]:
    """"1" ... "n": the DSJSON action ids (shared: do not change the list)."""
    return [str(i) for i in range(1, n + 1)]


@functools.lru_cache(maxsize=4096)
def iso(t: dt.datetime) -> str:
    """UTC, to the microsecond (a decision's times recur in its line: made once)."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot log {type(value).__name__}")


class DsjsonLine:
    """One decision in VW's decision-service JSON, as text whose cost is filled in later.

    ``a`` lists 1-based action ids, the chosen one first; ``p`` gives their probabilities in
    the same order; ``_label*`` describe the chosen action and its cost; ``c`` is the context
    exactly as it was scored. ``_nba`` carries our own metadata (VW ignores it). The cost comes
    first, so maturing a decision only swaps the number in front.
    """

    __slots__ = ("rest",)

    def __init__(self, rest: str):
        self.rest = rest

    @classmethod
    def build(cls, event_id: str, timestamp: dt.datetime, context_json: str,
              probabilities: np.ndarray, chosen: int, model_version: str,
              meta: dict[str, Any] | str) -> DsjsonLine:
        """The decision's line. ``meta``: a dict, or its JSON text already encoded. The text is
        what ``json.dumps`` (compact separators) makes of the fields, written out directly: the
        probabilities alone are ~100 numbers a decision."""
        p = probabilities.tolist()
        ordered = [p[chosen]] + p[:chosen] + p[chosen + 1:]
        ids = _action_ids(len(p))
        ids = [ids[chosen]] + ids[:chosen] + ids[chosen + 1:]
        text = {v: float.__repr__(v) for v in set(ordered)}  # most actions share one probability
        if not isinstance(meta, str):
            meta = json.dumps(meta, separators=(",", ":"), default=_json_default)
        head = (f'"_label_probability":{float.__repr__(float(p[chosen]))},"_label_Action":{chosen + 1},'
                f'"_labelIndex":{chosen},"Timestamp":"{iso(timestamp)}","Version":"1",'
                f'"EventId":{json.dumps(event_id)},"a":[{",".join(ids)}],'
                f'"p":[{",".join([text[v] for v in ordered])}],'
                f'"VWState":{json.dumps({"m": model_version}, separators=(",", ":"))},"_nba":{meta}')
        return cls(head + ',"c":' + context_json + "}")

    @classmethod
    def learned(cls, event_id: str, timestamp: dt.datetime, context_head: str, fragment: str, n_actions: int,
                probability: float, chosen: int) -> DsjsonLine:
        """The part of a decision's line that VW's mtr reduction learns from: the shared features,
        the chosen action's, and an empty example for every other action (``--cb_type mtr``
        learns only the chosen action, weighted by the number of actions it was among). A tenth
        of the whole line; the model learns the same weights from it. ``context_head``: the
        context up to and including ``"_multi":[``."""
        multi = ",".join(["{}"] * chosen + [fragment] + ["{}"] * (n_actions - chosen - 1))
        return cls(f'"_label_probability":{float.__repr__(float(probability))},"_label_Action":{chosen + 1},'
                   f'"_labelIndex":{chosen},"Timestamp":"{iso(timestamp)}","Version":"1",'
                   f'"EventId":{json.dumps(event_id)},"a":[{chosen + 1}],"p":[{float.__repr__(float(probability))}],'
                   f'"c":{context_head}{multi}]}}}}')

    def with_cost(self, cost: float) -> str:
        return '{"_label_cost":' + repr(float(cost)) + "," + self.rest

    def context_and_actions(self) -> tuple[str, int]:
        """The context (VW JSON text) and its number of actions."""
        line = json.loads("{" + self.rest)
        return json.dumps(line["c"], separators=(",", ":")), len(line["c"]["_multi"])
