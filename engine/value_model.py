"""The value model: Vowpal Wabbit contextual-bandit regression (``--cb_adf``), reused.

VW predicts a *cost* per action; the engine works with *values*, value = -cost. Contexts are
parsed with VW's own JSON parser (scoring) and DSJSON parser (learning), so online scoring and
offline training read identical features. A workspace is not thread-safe: every call into it
holds ``_lock``.
"""

from __future__ import annotations

import threading

import numpy as np
import vowpal_wabbit_next as vw

from engine.catalog import ModelSettings
from engine.decision_log import DsjsonLine


# Action sets whose parsed examples a model keeps (a few per time zone, hour and consent set).
ACTION_SETS_KEPT = 512


class ValueModel:
    """The value of each action: one VW regression of the decision's reward
    (``[model] structure = "direct"``)."""

    def __init__(self, settings: ModelSettings, model_data: bytes | None = None,
                 version: str = "cold-start"):
        self.settings = settings
        self.args = settings.vw_args()
        self.structure = settings.structure
        self._ws = vw.Workspace(self.args, model_data=model_data)
        self._lock = threading.Lock()
        self._actions: dict[str, list] = {}  # an action set's JSON -> its parsed examples (values_parts)
        self.version = version
        self.updates = 0

    @classmethod
    def restore(cls, settings: ModelSettings, data: bytes, version: str, updates: int = 0) -> ValueModel:
        """A model from its bytes (``serialize``), with its version and count of updates."""
        model = cls(settings, model_data=data, version=version)
        model.updates = updates
        return model

    def __reduce__(self):
        # pickled as what ``restore`` takes (Ray ships models between processes)
        return (ValueModel.restore, (self.settings, self.serialize(), self.version, self.updates))

    def _predict(self, context_json: str, n_actions: int) -> np.ndarray:
        # Straight to the core workspace (vowpal-wabbit-next is pinned): the public wrappers
        # build and type-check one Python object per action, which costs more than the
        # prediction itself for a hundred actions. Same parser, same features.
        return self._scores(self._parse(context_json), n_actions)

    def _parse(self, context_json: str) -> list:
        return vw._core._parse_line_json(self._ws._workspace, context_json)

    def values(self, context_json: str, n_actions: int) -> np.ndarray:
        """Estimated value of each of the ``n_actions`` actions of a VW JSON context, in order."""
        with self._lock:
            return self._predict(context_json, n_actions)

    def parse(self, context_json: str) -> list:
        """A VW JSON context parsed into this model's examples, for ``values_parsed`` (of this
        model or of another with the same settings)."""
        with self._lock:
            return self._parse(context_json)

    def values_parsed(self, examples: list, n_actions: int) -> np.ndarray:
        """``values`` of a context already parsed (``parse``)."""
        with self._lock:
            return self._scores(examples, n_actions)

    def values_parts(self, head: str, multi: str, n_actions: int) -> np.ndarray:
        """``values`` of the context ``head + multi + "]}"`` (``FeatureBuilder.context_parts``),
        the same values: the actions' examples are parsed once per set of actions and kept
        (VW leaves them as they were after each prediction), only the shared part per call."""
        with self._lock:
            ws = self._ws._workspace
            actions = self._actions.get(multi)
            if actions is None:
                parsed = vw._core._parse_line_json(ws, '{"_multi":[' + multi + "]}")
                if len(parsed) != n_actions + 1:  # not one shared example and the actions
                    return self._predict(f"{head}{multi}]}}", n_actions)
                if len(self._actions) >= ACTION_SETS_KEPT:
                    del self._actions[next(iter(self._actions))]
                actions = self._actions[multi] = parsed[1:]
            shared = vw._core._parse_line_json(ws, head + "]}")
            return self._scores(shared + actions, n_actions)

    def _scores(self, examples, n_actions: int) -> np.ndarray:
        values = [0.0] * n_actions  # (a list, then one array: faster than numpy per element)
        for index, cost in self._ws._workspace.predict_multi_ex_one(examples):
            values[index] = -cost
        return np.array(values)

    def healthy(self, context_json: str, n_actions: int) -> bool:
        """Whether the model scores a context with finite values (a check after learning)."""
        return bool(np.isfinite(self.values(context_json, n_actions)).all())

    def _learn(self, line: str) -> None:
        # Core calls, as in _predict: the public wrappers check every example's label type in
        # Python, which cost more than parsing and learning (the label is VW's own parse).
        examples = vw._core._parse_line_dsjson(self._ws._workspace, line)
        if not self.settings.importance_weighted:
            # mtr weighs the chosen action's squared error by 1/p; with p = 1 it is plain least
            # squares on the chosen action.
            for core in examples:
                example = vw.Example(_existing_example=core, _label_type=vw.LabelType.CB)
                label = example.get_label()
                if label.label is not None and not label.shared:
                    action, cost, _ = label.label
                    example.set_label(vw.CBLabel(label=(action, cost, 1.0)))
        self._ws._workspace.learn_multi_ex_one(examples)

    def learn_decision(self, dsjson: DsjsonLine, reward: float) -> None:
        """Learn from one matured decision and its reward."""
        self.learn_dsjson(dsjson.with_cost(-reward))

    def learn_dsjson(self, line: str) -> None:
        """Learn from one DSJSON decision line carrying its (joined) cost."""
        with self._lock:
            self._learn(line)
            self.updates += 1

    def serialize(self) -> bytes:
        with self._lock:
            return self._ws.serialize()
