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

import json
import struct
import threading

import numpy as np
import vowpal_wabbit_next as vw

from engine.catalog import ModelSettings
from engine.decision_log import DsjsonLine
from engine.exploration import group_max, group_mean, offer_channel_groups


# A model of several parts is saved as this header and the structure's name, then each part's
# VW model, length-prefixed.
PARTS_MAGIC = b"NBA-PARTS-1\n"
# The parts of each structure, besides the direct model's replicas.
STRUCTURE_PARTS = {
    "direct_open_slots": ("value", "open"),
    "mean_open_slots": ("value", "open"),
    "open_funnel": ("open", "opened", "unopened"),
    "open_stacked": ("value", "open"),
}
# open_stacked: the value part sees the open model's prediction in namespace P, alone and
# crossed with the offer and the channel (a value per expected open for each).
STACKED_INTERACTIONS = ("PO", "PC")


def with_open_propensity(context: dict, p_open: np.ndarray) -> dict:
    """The context (parsed VW JSON) with each contact action's open propensity in namespace P
    (no contact has none), in place."""
    for action, p in zip(context["_multi"], p_open):
        if p > 0.0:
            action["P"] = {"p_open": round(float(p), 5)}
    return context


def _is_contact(context: dict) -> np.ndarray:
    return np.array(["channel=none" not in a["C"] for a in context["_multi"]])


def _pack(structure: str, parts: list[bytes]) -> bytes:
    return PARTS_MAGIC + structure.encode() + b"\n" + b"".join(struct.pack("<Q", len(p)) + p for p in parts)


def _saved_structure(data: bytes) -> str:
    if not data.startswith(PARTS_MAGIC):
        return "direct"
    return data[len(PARTS_MAGIC):].split(b"\n", 1)[0].decode(errors="replace")


def _check_structure(structure: str, data: bytes) -> None:
    found = _saved_structure(data)
    if found != structure:
        raise ValueError(f"model data is a {found!r} model; model.structure is {structure!r}")


def _unpack(structure: str, data: bytes) -> list[bytes]:
    _check_structure(structure, data)
    parts, at = [], len(PARTS_MAGIC + structure.encode() + b"\n")
    for name in STRUCTURE_PARTS[structure]:
        if at + 8 > len(data):
            raise ValueError(f"{structure} model data ends before its {name!r} part")
        (n,) = struct.unpack_from("<Q", data, at)
        parts.append(data[at + 8:at + 8 + n])
        at += 8 + n
    return parts


def action_labels(context_json: str) -> list[str]:
    """``offer/channel/*`` or ``no_contact`` for each action of a context, from its features
    (the send slot is not needed: labels group an offer on a channel's send slots)."""
    labels = []
    for a in json.loads(context_json)["_multi"]:
        offer = next(k for k in a["O"] if k.startswith("offer="))[6:]
        channel = next(k for k in a["C"] if k.startswith("channel="))[8:]
        labels.append("no_contact" if channel == "none" else f"{offer}/{channel}/*")
    return labels


class ValueModel:
    """The value of each action. ``settings.structure``:

    * ``direct``: one regression of the decision's reward.
    * ``direct_open_slots``: the same, plus a regression of whether a contact is opened (the
      *open propensity*, learned from every contact: opens are ~30x as frequent as purchases).
      An offer on a channel is worth the best the direct model says of it over its send slots,
      at the slot the customer is likeliest to open, and less at the others in proportion to
      their open propensity: the direct model says whether and what to send, the opens say when
      (the reward alone is too noisy to tell slots apart).
    * ``mean_open_slots``: as ``direct_open_slots``, from the direct model's *mean* over an
      offer-on-a-channel's send slots instead of its best (the best of a dozen noisy estimates
      is biased upward), shared between the slots in proportion to their open propensity:
      v_s = m + |m| (p_s / mean(p) - 1), whose mean over the slots is m. With the catalog's
      ``exploration.slot_value = "mean"``, whether and what to send is decided on the direct
      model's mean, and when on the opens alone.
    * ``open_funnel``: value = p(open) x E[reward | opened] + (1 - p(open)) x E[reward | not
      opened], three regressions on the same features. No contact cannot be opened.
    * ``open_stacked``: the direct regression of the reward, with the open propensity of each
      contact (the regression of opens above) as a feature of its own, alone and crossed with
      the offer and the channel: the reward model learns a value per expected open from all of
      its data, and who opens, when, is learned from the opens.
    """

    def __init__(self, settings: ModelSettings, model_data: bytes | None = None,
                 version: str = "cold-start", seed: int = 0):
        self.settings = settings
        self.args = settings.vw_args()
        self.structure = settings.structure
        if self.structure == "direct":
            if model_data is not None:
                _check_structure("direct", model_data)
            self._ws = [vw.Workspace(self.args, model_data=model_data)
                        for _ in range(settings.replicas)]
            self._parts = self._ws[:1]
        else:
            names = STRUCTURE_PARTS[self.structure]
            data = _unpack(self.structure, model_data) if model_data is not None else [None] * len(names)
            args = {name: self.args for name in names}
            if self.structure == "open_stacked":
                args["value"] = self.args + [a for pair in STACKED_INTERACTIONS for a in ("-q", pair)]
            self._parts = [vw.Workspace(args[name], model_data=d) for name, d in zip(names, data)]
            self._ws = self._parts[:1]
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.version = version
        self.updates = 0
        self._replay: list[str] = []
        self._replay_seen = 0
        # Weight averaging: the served weights are an exponential moving average of replica 0's,
        # stepped every ``_average_every`` updates, written into a serving workspace when read.
        self._serving: vw.Workspace | None = None
        if settings.average_updates:
            self._serving = vw.Workspace(self.args, model_data=model_data)
            self._average = self._ws[0].weights()[..., 0].copy()
            self._average_every = max(1, settings.average_updates // 100)
            self._average_stale = False

    def _predict(self, ws: vw.Workspace, context_json: str, n_actions: int) -> np.ndarray:
        # Straight to the core workspace (vowpal-wabbit-next is pinned): the public wrappers
        # build and type-check one Python object per action, which costs more than the
        # prediction itself for a hundred actions. Same parser, same features.
        examples = vw._core._parse_line_json(ws._workspace, context_json)
        values = np.empty(n_actions)
        for index, cost in ws._workspace.predict_multi_ex_one(examples):
            values[index] = -cost
        return values

    def _open_propensity(self, context_json: str, context: dict) -> np.ndarray:
        """open_stacked: each action's predicted open probability (0 for no contact)."""
        p = np.clip(self._predict(self._parts[1], context_json, len(context["_multi"])), 0.0, 1.0)
        return np.where(_is_contact(context), p, 0.0)

    def _combined(self, context_json: str, n_actions: int, labels: list[str] | None) -> np.ndarray:
        if self.structure == "open_stacked":
            context = json.loads(context_json)
            p = self._open_propensity(context_json, context)
            stacked = json.dumps(with_open_propensity(context, p), separators=(",", ":"))
            return self._predict(self._parts[0], stacked, n_actions)
        predictions = [self._predict(ws, context_json, n_actions) for ws in self._parts]
        labels = labels if labels is not None else action_labels(context_json)
        contact = np.array([label != "no_contact" for label in labels])
        if self.structure == "open_funnel":
            p_open, opened, unopened = predictions
            p = np.where(contact, np.clip(p_open, 0.0, 1.0), 0.0)
            return p * opened + (1.0 - p) * unopened
        value, p_open = predictions
        p = np.clip(p_open, 1e-3, 1.0)
        group = offer_channel_groups(labels)
        over_slots = group_mean if self.structure == "mean_open_slots" else group_max
        base, scale = over_slots(value, group), over_slots(p, group)
        shared = base + np.abs(base) * (p / scale - 1.0)
        return np.where(contact, shared, value)

    def values(self, context_json: str, n_actions: int, labels: list[str] | None = None) -> np.ndarray:
        """Estimated value of each of the ``n_actions`` actions of a VW JSON context, in order.
        ``labels``: the actions' labels (``offer/channel/slot`` or ``no_contact``), which a model
        of several parts needs (read from the context when not given)."""
        with self._lock:
            if self.structure == "direct":
                return self._predict(self._served(), context_json, n_actions)
            return self._combined(context_json, n_actions, labels)

    def _served(self) -> vw.Workspace:
        """The workspace decisions are scored with: replica 0, or its averaged weights."""
        if self._serving is None:
            return self._ws[0]
        if self._average_stale:
            self._serving.weights()[..., 0] = self._average
            self._average_stale = False
        return self._serving

    def estimate(self, context_json: str, n_actions: int,
                 labels: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(values, spread): the served model's values and the standard deviation across the
        bootstrap replicas (zeros without replicas)."""
        if self.structure != "direct":
            return self.values(context_json, n_actions, labels), np.zeros(n_actions)
        with self._lock:
            all_values = np.stack([self._predict(ws, context_json, n_actions)
                                   for ws in [self._served(), *self._ws[1:]]])
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

    def learn_decision(self, dsjson: DsjsonLine, reward: float, opened: bool, contacted: bool) -> None:
        """Learn from one matured decision: its reward and whether it was opened."""
        if self.structure == "direct":
            self.learn_dsjson(dsjson.with_cost(-reward))
            return
        with self._lock:
            open_cost = dsjson.with_cost(-1.0 if opened else 0.0)
            if self.structure == "open_funnel":
                open_ws, opened_ws, unopened_ws = self._parts
                self._learn(opened_ws if opened else unopened_ws, dsjson.with_cost(-reward))
            elif self.structure == "open_stacked":
                value_ws, open_ws = self._parts
                line = json.loads(dsjson.with_cost(-reward))
                context_json = json.dumps(line["c"], separators=(",", ":"))
                with_open_propensity(line["c"], self._open_propensity(context_json, line["c"]))
                self._learn(value_ws, json.dumps(line, separators=(",", ":")))
            else:
                value_ws, open_ws = self._parts
                self._learn(value_ws, dsjson.with_cost(-reward))
            if contacted:
                self._learn(open_ws, open_cost)
            self.updates += 1

    def learn_dsjson(self, line: str) -> None:
        """Learn from one DSJSON decision line carrying its (joined) cost (a direct model)."""
        if self.structure != "direct":
            raise ValueError(f"a {self.structure} model learns from outcomes (learn_decision), not a cost alone")
        with self._lock:
            self._learn(self._ws[0], line)
            for ws in self._ws[1:]:
                for _ in range(self._rng.poisson(1.0)):
                    self._learn(ws, line)
            if self.settings.replay:
                self._relearn(line)
            self.updates += 1
            if self._serving is not None and self.updates % self._average_every == 0:
                beta = self._average_every / self.settings.average_updates
                self._average += beta * (self._ws[0].weights()[..., 0] - self._average)
                self._average_stale = True

    def _relearn(self, line: str) -> None:
        """Experience replay: learn ``replay`` past lines, then keep ``line`` in a uniform
        reservoir of the lines learned so far (at most ``replay_buffer``)."""
        buffer = self._replay
        if buffer:
            for i in self._rng.integers(len(buffer), size=self.settings.replay):
                self._learn(self._ws[0], buffer[i])
        self._replay_seen += 1
        if len(buffer) < self.settings.replay_buffer:
            buffer.append(line)
        else:
            j = int(self._rng.integers(self._replay_seen))
            if j < len(buffer):
                buffer[j] = line

    def serialize(self) -> bytes:
        with self._lock:
            if self.structure != "direct":
                return _pack(self.structure, [ws.serialize() for ws in self._parts])
            return self._ws[0].serialize()
