"""The value model: one Vowpal Wabbit contextual-bandit workspace (``--cb_adf``), reused.

VW predicts a *cost* per action; the engine works with *values*, value = -cost. Contexts are
parsed with VW's own JSON parser (scoring) and DSJSON parser (learning), so online scoring and
offline training read identical features. A workspace is not thread-safe: calls are locked.
"""

from __future__ import annotations

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
        self._dsjson = vw.DSJsonFormatParser(self._ws)
        self._lock = threading.Lock()
        self.version = version
        self.updates = 0

    @classmethod
    def from_file(cls, settings: ModelSettings, path: str | Path) -> ValueModel:
        path = Path(path)
        return cls(settings, model_data=path.read_bytes(), version=f"file:{path.name}")

    def values(self, context_json: str, n_actions: int) -> np.ndarray:
        """Estimated value of each of the ``n_actions`` actions of a VW JSON context, in order."""
        with self._lock:
            # Straight to the core workspace (vowpal-wabbit-next is pinned): the public wrappers
            # build and type-check one Python object per action, which costs more than the
            # prediction itself for a hundred actions. Same parser, same features.
            examples = vw._core._parse_line_json(self._ws._workspace, context_json)
            scores = self._ws._workspace.predict_multi_ex_one(examples)
        values = np.empty(n_actions)
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
