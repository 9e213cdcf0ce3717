"""The value model: one Vowpal Wabbit contextual-bandit workspace (``--cb_adf``), reused.

VW predicts a *cost* per action; the engine works with *values*, value = -cost. Contexts are
parsed with VW's own JSON parser (scoring) and DSJSON parser (learning), so online scoring and
offline training read identical features. A workspace is not thread-safe: calls are locked.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import vowpal_wabbit_next as vw

from engine.catalog import ModelSettings


class ValueModel:
    def __init__(self, settings: ModelSettings, model_data: bytes | None = None,
                 version: str = "cold-start"):
        self.settings = settings
        self.args = settings.vw_args()
        self._ws = vw.Workspace(self.args, model_data=model_data)
        self._json = vw.JsonFormatParser(self._ws)
        self._dsjson = vw.DSJsonFormatParser(self._ws)
        self._lock = threading.Lock()
        self.version = version
        self.updates = 0

    @classmethod
    def from_file(cls, settings: ModelSettings, path: str | Path) -> ValueModel:
        path = Path(path)
        return cls(settings, model_data=path.read_bytes(), version=f"file:{path.name}")

    def values(self, context: dict) -> np.ndarray:
        """Estimated value of each action in ``context['_multi']``, in that order."""
        text = json.dumps(context)
        with self._lock:
            scores = self._ws.predict_one(self._json.parse_json(text))
        values = np.empty(len(context["_multi"]))
        for index, cost in scores:
            values[index] = -cost
        return values

    def learn_dsjson(self, line: str) -> None:
        """Learn from one DSJSON decision line carrying its (joined) cost."""
        with self._lock:
            self._ws.learn_one(self._dsjson.parse_json(line))
            self.updates += 1

    def serialize(self) -> bytes:
        with self._lock:
            return self._ws.serialize()
