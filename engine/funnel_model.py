"""The funnel model (``[model] structure = "funnel"``): an action's value as the product of the
steps a contact goes through, each learned from the outcomes that inform it.

    value(contact) = P(open) x P(click | opened) x P(a purchase the contact caused | clicked)
                       x margin of a purchase
                     - the incentive it pays + the credits it earns (opens, clicks, deliveries)
                     - P(unsubscribe) x its penalty - P(complaint) x its penalty
                     - the channel's contact cost (the catalog's: subtracted by the engine)
    value(no contact) = 0

Each head is a Vowpal Wabbit workspace with the direct model's settings (``--cb_adf --cb_type
mtr``, the same features and interactions) that learns the chosen action only, from the
decisions that inform it (``HEADS``): the probabilities are logistic regressions, the amounts
least squares. An open is ~100x more frequent than a purchase and a click ~10x, so the send slot
and the channel are learned from opens and the offer from clicks and purchases, each step
without the noise of the steps after it.

Purchases the customer would have made anyway: a clicked decision's purchase may be organic.
The ``organic`` head is P(a purchase in the attribution window) learned from the decisions
whose customer nothing reached -- no contact, a control-group decision, or a contact never
opened (the engine's own choice of customers, so its baseline is theirs) --, a baseline that
does not depend on the action. The caused purchase's probability is taken from the clicked
decisions' as 1 - (1 - P(purchase | clicked)) / (1 - P(organic purchase)): what the contact
adds, the customer's baseline removed (the control-variate idea of CUPED: Deng, Xu, Kohavi and
Walker, "Improving the Sensitivity of Online Controlled Experiments by Utilizing Pre-Experiment
Data", WSDM 2013).

The product keeps a customer's contact value tied to what is known of that customer's opens and
clicks: the weights a sum-of-features model fits on other customers cannot sink it. With nothing
learned of clicks yet (no opened contact) the model is cold: every action is worth 0 (a tie: the engine's default
contact, as with a cold direct model).

Scoring parses the context once and predicts with each head (the heads share VW's parser
settings). A model is saved as one blob (``serialize``): a header line, then each head's bytes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np
import orjson
import vowpal_wabbit_next as vw
from vowpal_wabbit_next import _core

from engine.catalog import ModelSettings, RewardDefinition
from engine.decision_log import DsjsonLine
from engine.domain import Action
from engine.features import action_features
from engine.rewards import FunnelSignals
from engine.value_model import ACTION_SETS_KEPT

# head -> (logistic, which decisions it learns from); the decisions are told by FunnelSignals
HEADS = {
    "open": (True, "contacts"),          # opened
    "click": (True, "opened"),           # clicked
    "purchase": (True, "clicked"),       # a purchase reported (the contact's or organic)
    "margin": (False, "bought"),         # EUR: the margin on a decision's purchases, when it has any
    "incentive": (True, "incentives"),   # the incentive paid, on contacts with an offer that has a cost
    "credits": (False, "contacts"),      # EUR: the delivered, opened and clicked values
    "unsubscribe": (True, "contacts"),
    "complaint": (True, "contacts"),
    "organic": (True, "not opened"),     # a purchase reported, with no contact or an unopened one
}
# The logistic heads' learning rates. A logistic loss on labels of +-1 moves less per example
# than a squared loss on EUR amounts does: an open (about one contact in four) is learned at 0.5.
# The rarer events -- a click (about one opened contact in eight), a purchase (one click in six),
# a paid incentive, an unsubscribe, a complaint, an organic purchase (a few decisions in a hundred
# or a thousand) -- at 0.1: at 0.5 the few events of one campaign's matured decisions swung
# their estimates by up to a factor of 2 from one campaign to the next (bench/funnel_heads.py),
# and the value, their product, with them (docs/experiments.md).
LOGISTIC_LEARNING_RATE = {"open": 0.5}
RARE_EVENT_LEARNING_RATE = 0.1
MAGIC = b"nba-funnel-model 2\n"
NO_CONTACT_FRAGMENT = json.dumps(action_features(Action.none(), None), separators=(",", ":"))


def _labelled(fragment: str, cost: float) -> str:
    """An action's JSON fragment with a contextual-bandit label (cost, probability 1)."""
    return '{"_label":"0:' + repr(float(cost)) + ':1.0",' + fragment[1:]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


@dataclass(frozen=True)
class _ActionSet:
    """What the values need of a set of actions beyond the heads: each one's incentive cost (the
    ``incentive`` feature of its offer), and whether the last is no contact."""

    costs: np.ndarray
    no_contact_last: bool

    @classmethod
    def of(cls, fragments: list[dict], n_actions: int) -> _ActionSet:
        costs = np.array([float(f.get("O", {}).get("incentive", 0.0)) for f in fragments[:n_actions]])
        last = fragments[n_actions - 1] if n_actions else {}
        return cls(costs, "offer=none" in last.get("O", {}))


class FunnelModel:
    """The value of each action from the heads of the funnel (module docstring). Thread-safe:
    every call into the workspaces holds ``_lock``. Has ``ValueModel``'s interface for scoring
    and saving; learns from ``learn_funnel`` (a matured decision's ``FunnelSignals``).
    ``reward``: the catalog's reward definition (its penalties)."""

    structure = "funnel"

    def __init__(self, settings: ModelSettings, model_data: bytes | None = None, version: str = "cold-start",
                 reward: RewardDefinition | None = None):
        self.settings = settings
        self.reward = reward if reward is not None else RewardDefinition(margin_rate=0.0)
        base = settings.vw_args()
        self.args = ["--nba_structure", "funnel", *base]
        heads, learned = {}, dict.fromkeys(HEADS, 0)
        if model_data is not None:
            heads, learned = _unpack(model_data)
        self._heads = {name: vw.Workspace(self._head_args(name, base), model_data=heads.get(name))
                       for name in HEADS}
        self.learned = learned  # examples each head has learned
        self._lock = threading.Lock()
        self._actions: dict[str, tuple[list, _ActionSet]] = {}  # an action set's JSON -> its parsed examples
        self._no_contact: list | None = None  # the no-contact action's example, parsed once
        self.version = version
        self.updates = 0

    @staticmethod
    def _head_args(name: str, base: list[str]) -> list[str]:
        if not HEADS[name][0]:
            return base
        args = list(base)
        args[args.index("-l") + 1] = repr(LOGISTIC_LEARNING_RATE.get(name, RARE_EVENT_LEARNING_RATE))
        return args + ["--loss_function", "logistic"]

    @classmethod
    def restore(cls, settings: ModelSettings, data: bytes, version: str, updates: int = 0,
                reward: RewardDefinition | None = None) -> FunnelModel:
        model = cls(settings, model_data=data, version=version, reward=reward)
        model.updates = updates
        return model

    def __reduce__(self):
        return (FunnelModel.restore, (self.settings, self.serialize(), self.version, self.updates, self.reward))

    @property
    def cold(self) -> bool:
        """No opened contact learned yet (nothing known of clicks): every action is worth 0."""
        return not self.learned["click"]

    # -- scoring --------------------------------------------------------------------------------

    def _parse(self, text: str) -> list:
        return _core._parse_line_json(self._heads["open"]._workspace, text)

    def _head(self, name: str, examples: list, n_actions: int) -> np.ndarray:
        """The head's estimate for every action: a probability or an amount in EUR."""
        scores = [0.0] * n_actions
        for index, cost in self._heads[name]._workspace.predict_multi_ex_one(examples):
            scores[index] = -cost
        scores = np.array(scores)
        return _sigmoid(scores) if HEADS[name][0] else scores

    def _parts(self, examples: list, n_actions: int) -> dict[str, np.ndarray]:
        """Each head's estimate for every action; the organic baseline is the customer's
        (predicted for no contact: it does not depend on the action)."""
        parts = {name: self._head(name, examples, n_actions) for name in HEADS if name != "organic"}
        if self._no_contact is None:
            self._no_contact = self._parse('{"_multi":[' + NO_CONTACT_FRAGMENT + "]}")[1:]
        parts["organic"] = np.full(n_actions, self._head("organic", examples[:1] + self._no_contact, 1)[0])
        return parts

    def _values(self, examples: list, actions: _ActionSet) -> np.ndarray:
        n_actions = len(actions.costs)
        if self.cold:
            return np.zeros(n_actions)
        p = self._parts(examples, n_actions)
        caused = np.clip(1.0 - (1.0 - p["purchase"]) / np.maximum(1.0 - p["organic"], 1e-6), 0.0, 1.0)
        r = self.reward
        values = (p["open"] * p["click"] * caused * np.maximum(p["margin"], 0.0)
                  - p["incentive"] * actions.costs + p["credits"]
                  - p["unsubscribe"] * r.unsubscribe_penalty - p["complaint"] * r.complaint_penalty)
        if actions.no_contact_last:
            values[-1] = 0.0
        return values

    def values(self, context_json: str, n_actions: int) -> np.ndarray:
        """Estimated value of each of the ``n_actions`` actions of a VW JSON context, in order."""
        with self._lock:
            multi = orjson.loads(context_json)["_multi"]
            return self._values(self._parse(context_json), _ActionSet.of(multi, n_actions))

    def values_parts(self, head: str, multi: str, n_actions: int) -> np.ndarray:
        """``values`` of the context ``head + multi + "]}"``; the actions' examples are parsed once
        per set of actions and kept."""
        with self._lock:
            kept = self._actions.get(multi)
            if kept is None:
                parsed = self._parse('{"_multi":[' + multi + "]}")
                actions = _ActionSet.of(orjson.loads("[" + multi + "]"), n_actions)
                if len(parsed) != n_actions + 1:
                    return self._values(self._parse(f"{head}{multi}]}}"), actions)
                if len(self._actions) >= ACTION_SETS_KEPT:
                    del self._actions[next(iter(self._actions))]
                kept = self._actions[multi] = (parsed[1:], actions)
            examples, actions = kept
            return self._values(self._parse(head + "]}") + examples, actions)

    def healthy(self, context_json: str, n_actions: int) -> bool:
        return bool(np.isfinite(self.values(context_json, n_actions)).all())

    def parts(self, context_json: str, n_actions: int) -> dict[str, np.ndarray]:
        """Each head's estimate for every action (for reading the model: tests, notebooks)."""
        with self._lock:
            return self._parts(self._parse(context_json), n_actions)

    # -- learning -------------------------------------------------------------------------------

    def _learn(self, name: str, head: str, fragment: str, target: float | bool) -> None:
        """One example for a head: a probability's event (True/False) or an amount."""
        cost = (-1.0 if target else 1.0) if HEADS[name][0] else -float(target)
        ws = self._heads[name]._workspace
        ws.learn_multi_ex_one(_core._parse_line_json(ws, head + _labelled(fragment, cost) + "]}"))
        self.learned[name] += 1

    def learn_funnel(self, dsjson: DsjsonLine, s: FunnelSignals) -> None:
        """Learn one matured decision into the heads its outcomes inform."""
        line = orjson.loads(b"{" + dsjson.rest.encode())
        context = line["c"]
        shared = {k: v for k, v in context.items() if k != "_multi"}
        head = orjson.dumps(shared).decode()[:-1] + ("," if shared else "") + '"_multi":['
        with self._lock:
            if not s.opened:  # nothing the engine did reached the customer
                self._learn("organic", head, NO_CONTACT_FRAGMENT, s.purchased)
            if s.contacted:
                fragment = orjson.dumps(context["_multi"][int(line["_labelIndex"])]).decode()
                for name, target in (("open", s.opened), ("credits", s.credits),
                                     ("unsubscribe", s.unsubscribed), ("complaint", s.complained)):
                    self._learn(name, head, fragment, target)
                if s.offer_cost > 0:
                    self._learn("incentive", head, fragment, s.incentive > 0)
                if s.opened:
                    self._learn("click", head, fragment, s.clicked)
                if s.clicked:
                    self._learn("purchase", head, fragment, s.purchased)
            if s.purchased:  # what a purchase of this customer is worth, caused or organic
                self._learn("margin", head, fragment if s.contacted else NO_CONTACT_FRAGMENT, s.purchases)
            self.updates += 1

    def learn_decision(self, dsjson: DsjsonLine, reward: float) -> None:
        raise TypeError("the funnel model learns a decision's outcomes (learn_funnel), not its reward")

    # -- saving ---------------------------------------------------------------------------------

    def serialize(self) -> bytes:
        with self._lock:
            blobs = {name: self._heads[name].serialize() for name in HEADS}
            header = {"heads": {name: len(blobs[name]) for name in HEADS}, "learned": self.learned}
            return MAGIC + json.dumps(header).encode() + b"\n" + b"".join(blobs[name] for name in HEADS)


def _unpack(data: bytes) -> tuple[dict[str, bytes], dict[str, int]]:
    """(head -> its VW bytes, head -> examples learned) of ``serialize``'s blob."""
    if not data.startswith(MAGIC):
        raise ValueError("not a funnel model (its first line is not the funnel model's header)")
    end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):end])
    heads, at = {}, end + 1
    for name in HEADS:
        size = int(header["heads"][name])
        heads[name] = data[at:at + size]
        at += size
    if at != len(data):
        raise ValueError(f"funnel model: {len(data) - at} bytes beyond its heads")
    return heads, {name: int(header["learned"].get(name, 0)) for name in HEADS}
