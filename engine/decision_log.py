"""Append-only JSON-lines logs: DSJSON decisions and outcomes, rotated by size.

Each record is written with a single ``write`` system call on a file opened ``O_APPEND``, so a
crash can at worst leave the last line truncated; earlier lines are never rewritten. Every
process start opens a new file (name: ``<prefix>-<UTC start>-<pid>-<seq>.jsonl``), so a
truncated tail is never appended to, and several processes can share one directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class JsonlLog:
    def __init__(self, directory: str | Path, prefix: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 fsync: bool = False):
        if max_bytes < 1024:
            raise ValueError(f"max_bytes must be at least 1024, got {max_bytes}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._seq = 0
        self._fd: int | None = None
        self._size = 0
        self.path: Path | None = None

    def _open_next(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._seq += 1
        self.path = self.directory / f"{self.prefix}-{self._stamp}-{os.getpid()}-{self._seq:04d}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

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
            if self.fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def log_files(directory: str | Path, prefix: str) -> list[Path]:
    """The files of one log in write order (names sort by start time, pid, sequence)."""
    return sorted(Path(directory).glob(f"{prefix}-*.jsonl"))


def iso(t: dt.datetime) -> str:
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
              meta: dict[str, Any]) -> DsjsonLine:
        k = len(probabilities)
        order = [chosen] + [i for i in range(k) if i != chosen]
        head = {
            "_label_probability": float(probabilities[chosen]),
            "_label_Action": chosen + 1,
            "_labelIndex": chosen,
            "Timestamp": iso(timestamp),
            "Version": "1",
            "EventId": event_id,
            "a": [i + 1 for i in order],
            "p": [float(probabilities[i]) for i in order],
            "VWState": {"m": model_version},
            "_nba": meta,
        }
        body = json.dumps(head, separators=(",", ":"), default=_json_default)
        return cls(body[1:-1] + ',"c":' + context_json + "}")

    def with_cost(self, cost: float) -> str:
        return '{"_label_cost":' + repr(float(cost)) + "," + self.rest

    def context_and_actions(self) -> tuple[str, int]:
        """The context as scored (VW JSON text) and its number of actions."""
        line = json.loads("{" + self.rest)
        return json.dumps(line["c"], separators=(",", ":")), len(line["a"])
