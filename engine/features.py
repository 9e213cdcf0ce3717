"""The one feature builder: request + engine history + actions -> VW JSON context.

The same context text is scored online (VW's JSON parser) and written in the DSJSON decision
log, so a model trained offline from the logs sees exactly the features the server scored.

Namespaces (their first letter is what VW interactions refer to):
  U  customer features from the request (numeric as ``name: value``, categorical as
     ``name=value: 1`` so a name/value pair can never collide with another)
  H  the engine's own history of the customer: contacts per channel in the last 7 days,
     hours since the last contact and since the last response -- lets the model learn fatigue
     -- and, per channel, log(1 + n) of its contacts opened, ignored (settled, never opened)
     and clicked over the customer's whole record: who still reads, who no longer does
  O  offer (id, incentive cost), C channel, T send slot; no_contact has offer and channel
     "none", so customer x offer interactions give it a value of its own.
"""

from __future__ import annotations

import json
import math
from typing import Any

from engine.catalog import Catalog
from engine.domain import Action, DecisionRequest
from engine.state import ContactHistory


def customer_namespace(request: DecisionRequest) -> dict[str, float]:
    features: dict[str, float] = {name: float(v) for name, v in request.numeric_features.items()}
    for name, value in request.categorical_features.items():
        features[f"{name}={value}"] = 1.0
    return features


def history_namespace(history: ContactHistory, channels: list[str]) -> dict[str, float]:
    features = {f"{ch}_7d": float(history.contacts_7d.get(ch, 0)) for ch in channels}
    features["contacts_7d"] = float(sum(history.contacts_7d.values()))
    if history.long_days > 7:
        days = history.long_days
        features.update({f"{ch}_{days}d": float(history.contacts_long.get(ch, 0)) for ch in channels})
    if history.hours_since_contact is None:
        features["never_contacted"] = 1.0
    else:
        features["log_hours_since_contact"] = math.log1p(max(history.hours_since_contact, 0.0))
    if history.hours_since_response is None:
        features["never_responded"] = 1.0
    else:
        features["log_hours_since_response"] = math.log1p(max(history.hours_since_response, 0.0))
    for channel, (settled, opened, clicked) in history.responses.items():
        features[f"{channel}_opened"] = math.log1p(opened)
        features[f"{channel}_ignored"] = math.log1p(max(settled - opened, 0))
        if clicked:
            features[f"{channel}_clicked"] = math.log1p(clicked)
    return features


def action_features(action: Action, catalog: Catalog) -> dict[str, dict[str, Any]]:
    if action.no_contact:
        return {"O": {"offer=none": 1.0}, "C": {"channel=none": 1.0}}
    return {
        "O": {f"offer={action.offer_id}": 1.0, "incentive": catalog.offers[action.offer_id].cost},
        "C": {f"channel={action.channel}": 1.0},
        "T": {f"slot={action.send_slot}": 1.0},
    }


# Sets of actions whose context part is kept (the oldest go first).
MULTI_KEPT = 4096


class FeatureBuilder:
    """Builds context JSON text; per-action fragments are cached (they depend on the catalog
    only), so a decision over a hundred actions encodes only the customer's part."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._channels = list(catalog.channels)
        self._fragments: dict[str, str] = {}  # Action.label -> JSON
        self._multi: dict[tuple[str, ...], str] = {}  # actions' labels -> their part of the context

    def _fragment(self, action: Action) -> str:
        text = self._fragments.get(action.label)
        if text is None:
            text = self._fragments[action.label] = json.dumps(action_features(action, self.catalog),
                                                              separators=(",", ":"))
        return text

    def context_json(self, request: DecisionRequest, history: ContactHistory,
                     actions: tuple[Action, ...], labels: tuple[str, ...] | None = None) -> str:
        """The context VW scores. ``labels``: the actions' labels, when the caller has them: the
        actions' part of the context is then the same text for the same labels, made once."""
        head, multi = self.context_parts(request, history, actions, labels)
        return f"{head}{multi}]}}"

    def context_parts(self, request: DecisionRequest, history: ContactHistory, actions: tuple[Action, ...],
                      labels: tuple[str, ...] | None = None) -> tuple[str, str]:
        """The context as (its text up to and including ``"_multi":[``, the actions' part)."""
        shared = json.dumps(customer_namespace(request), separators=(",", ":"))
        hist = json.dumps(history_namespace(history, self._channels), separators=(",", ":"))
        multi = self._multi.get(labels) if labels is not None else None
        if multi is None:
            multi = ",".join(self._fragment(a) for a in actions)
            if labels is not None:
                if len(self._multi) >= MULTI_KEPT:
                    del self._multi[next(iter(self._multi))]
                self._multi[labels] = multi
        return f'{{"U":{shared},"H":{hist},"_multi":[', multi

    def fragment(self, action: Action) -> str:
        """An action's features as JSON text (``action_features``)."""
        return self._fragment(action)
