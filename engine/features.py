"""The one feature builder: request + engine history + actions -> VW JSON context.

The same context is scored online (VW JSON parser) and written in the DSJSON decision log, so a
model trained offline from the logs sees exactly the features the server scored.

Namespaces (their first letter is what VW interactions refer to):
  U  customer features from the request (numeric as ``name: value``, categorical as
     ``name=value: 1`` so a name/value pair can never collide with another)
  H  the engine's own history of the customer: contacts per channel in the last 7 days,
     hours since the last contact -- lets the model learn fatigue
  O  offer (id, incentive cost), C channel, T send slot and hour; no_contact has offer and
     channel "none" so that customer x offer interactions give it a value of its own.
"""

from __future__ import annotations

import math
from typing import Any

from engine.catalog import Catalog
from engine.domain import Action, DecisionRequest
from engine.state import ContactHistory

Context = dict[str, Any]


def customer_namespace(request: DecisionRequest) -> dict[str, float]:
    features: dict[str, float] = {name: float(v) for name, v in request.numeric_features.items()}
    for name, value in request.categorical_features.items():
        features[f"{name}={value}"] = 1.0
    return features


def history_namespace(history: ContactHistory, channels: list[str]) -> dict[str, float]:
    features = {f"{ch}_7d": float(history.contacts_7d.get(ch, 0)) for ch in channels}
    features["contacts_7d"] = float(sum(history.contacts_7d.values()))
    if history.hours_since_contact is None:
        features["never_contacted"] = 1.0
    else:
        features["log_hours_since_contact"] = math.log1p(max(history.hours_since_contact, 0.0))
    return features


def action_features(action: Action, catalog: Catalog) -> dict[str, dict[str, Any]]:
    if action.no_contact:
        return {"O": {"offer=none": 1.0}, "C": {"channel=none": 1.0}}
    return {
        "O": {f"offer={action.offer_id}": 1.0, "incentive": catalog.offers[action.offer_id].cost},
        "C": {f"channel={action.channel}": 1.0},
        "T": {f"slot={action.send_slot}": 1.0},
    }


def build_context(request: DecisionRequest, history: ContactHistory, actions: tuple[Action, ...],
                  catalog: Catalog) -> Context:
    return {
        "U": customer_namespace(request),
        "H": history_namespace(history, list(catalog.channels)),
        "_multi": [action_features(a, catalog) for a in actions],
    }
