"""The value model: Vowpal Wabbit contextual-bandit regression (``--cb_adf``), reused.

VW predicts a *cost* per action; the engine works with *values*, value = -cost. Contexts are
parsed with VW's own JSON parser (scoring) and DSJSON parser (learning), so online scoring and
offline training read identical features. A workspace is not thread-safe: calls are locked.

With ``replicas`` > 1 the model also keeps bootstrap replicas (online bagging: each example is
learned Poisson(1) times by each replica; Oza & Russell, "Online Bagging and Boosting", 2001).
Their spread across actions says how sure the model is of each value. The first workspace
learns every example once and is the one served and saved.
"""

from __future__ import annotations

import threading

import numpy as np
import vowpal_wabbit_next as vw

from engine.catalog import ModelSettings


class ValueModel:
    def __init__(self, settings: ModelSettings, model_data: bytes | None = None,
                 version: str = "cold-start", seed: int = 0):
        self.settings = settings
        self.args = settings.vw_args()
        self._ws = [vw.Workspace(self.args, model_data=model_data)
                    for _ in range(settings.replicas)]
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.version = version
        self.updates = 0

    def _predict(self, ws: vw.Workspace, context_json: str, n_actions: int) -> np.ndarray:
        # Straight to the core workspace (vowpal-wabbit-next is pinned): the public wrappers
        # build and type-check one Python object per action, which costs more than the
        # prediction itself for a hundred actions. Same parser, same features.
        examples = vw._core._parse_line_json(ws._workspace, context_json)
        values = np.empty(n_actions)
        for index, cost in ws._workspace.predict_multi_ex_one(examples):
            values[index] = -cost
        return values

    def values(self, context_json: str, n_actions: int) -> np.ndarray:
        """Estimated value of each of the ``n_actions`` actions of a VW JSON context, in order."""
        with self._lock:
            return self._predict(self._ws[0], context_json, n_actions)

    def estimate(self, context_json: str, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, spread): the served model's values and the standard deviation across the
        bootstrap replicas (zeros without replicas)."""
        with self._lock:
            all_values = np.stack([self._predict(ws, context_json, n_actions) for ws in self._ws])
        spread = all_values.std(axis=0, ddof=1) if len(self._ws) > 1 else np.zeros(n_actions)
        return all_values[0], spread

    def _learn(self, ws: vw.Workspace, line: str) -> None:
        # Core calls, as in _predict: the public wrappers check every example's label type in
        # Python, which cost more than parsing and learning (the label is VW's own parse).
        examples = vw._core._parse_line_dsjson(ws._workspace, line)
        if not self.settings.importance_weighted:
            # mtr weighs the chosen action's squared error by 1/p; with p = 1 it is plain least
            # squares on the chosen action.
            for core in examples:
                example = vw.Example(_existing_example=core, _label_type=vw.LabelType.CB)
                label = example.get_label()
                if label.label is not None and not label.shared:
                    action, cost, _ = label.label
                    example.set_label(vw.CBLabel(label=(action, cost, 1.0)))
        ws._workspace.learn_multi_ex_one(examples)

    def learn_dsjson(self, line: str) -> None:
        """Learn from one DSJSON decision line carrying its (joined) cost."""
        with self._lock:
            self._learn(self._ws[0], line)
            for ws in self._ws[1:]:
                for _ in range(self._rng.poisson(1.0)):
                    self._learn(ws, line)
            self.updates += 1

    def serialize(self) -> bytes:
        with self._lock:
            return self._ws[0].serialize()
