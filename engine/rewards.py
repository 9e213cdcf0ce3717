"""The one reward definition: net value of a decision from its outcomes.

    reward = margin_rate * sum(conversion values)   (only after a CLICKED outcome when the
                                                     catalog's purchase_attribution is "click")
             - offer cost (once: when REDEEMED is reported, or on any CONVERTED when the
               catalog says incentive_paid_on = "conversion")
             + opened/clicked/delivered values (once each)
             - unsubscribe_penalty (once) - complaint_penalty (once)
             - contact cost (always, for a contact)

With no outcome at all, ``default_reward`` replaces the outcome part. VW minimises cost, so
the logged cost is ``-reward``. Used by the server's online join and by offline training.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.catalog import RewardDefinition
from engine.domain import OutcomeType


def was_opened(outcomes: Iterable[tuple[OutcomeType, float]]) -> bool:
    """Whether a decision's outcomes include an open (what a model of opens learns)."""
    return any(kind is OutcomeType.OPENED for kind, _ in outcomes)


def net_reward(definition: RewardDefinition, outcomes: Iterable[tuple[OutcomeType, float]],
               contacted: bool, offer_cost: float, contact_cost: float) -> float:
    outcomes = list(outcomes)
    kinds = {kind for kind, _ in outcomes}
    if not outcomes:
        value = definition.default_reward
    else:
        counts_purchases = (definition.purchase_attribution == "window"
                            or OutcomeType.CLICKED in kinds)
        revenue = sum(v for kind, v in outcomes if kind is OutcomeType.CONVERTED) if counts_purchases else 0.0
        value = definition.margin_rate * revenue
        paid_on = (OutcomeType.REDEEMED if definition.incentive_paid_on == "redemption"
                   else OutcomeType.CONVERTED)
        if paid_on in kinds:
            value -= offer_cost
        if OutcomeType.DELIVERED in kinds:
            value += definition.delivered_value
        if OutcomeType.OPENED in kinds:
            value += definition.opened_value
        if OutcomeType.CLICKED in kinds:
            value += definition.clicked_value
        if OutcomeType.UNSUBSCRIBED in kinds:
            value -= definition.unsubscribe_penalty
        if OutcomeType.COMPLAINED in kinds:
            value -= definition.complaint_penalty
    if contacted:
        value -= contact_cost
    return value
