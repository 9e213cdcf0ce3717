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
from dataclasses import dataclass

from engine.catalog import Catalog, RewardDefinition
from engine.domain import OutcomeType


def was_opened(outcomes: Iterable[tuple[OutcomeType, float]]) -> bool:
    """Whether a decision's outcomes include an open (what a model of opens learns)."""
    return any(kind is OutcomeType.OPENED for kind, _ in outcomes)


def counts_purchases(definition: RewardDefinition, kinds: set[OutcomeType]) -> bool:
    """Whether a decision with outcomes of these kinds has its purchases counted: every purchase
    with window attribution, a clicked decision's with click attribution."""
    return definition.purchase_attribution == "window" or OutcomeType.CLICKED in kinds


def paid_on(definition: RewardDefinition) -> OutcomeType:
    """The outcome on which the offer's cost is charged."""
    return OutcomeType.REDEEMED if definition.incentive_paid_on == "redemption" else OutcomeType.CONVERTED


def net_reward(definition: RewardDefinition, outcomes: Iterable[tuple[OutcomeType, float]],
               contacted: bool, offer_cost: float, contact_cost: float) -> float:
    outcomes = list(outcomes)
    kinds = {kind for kind, _ in outcomes}
    if not outcomes:
        value = definition.default_reward
    else:
        revenue = (sum(v for kind, v in outcomes if kind is OutcomeType.CONVERTED)
                   if counts_purchases(definition, kinds) else 0.0)
        value = definition.margin_rate * revenue
        if paid_on(definition) in kinds:
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


@dataclass(frozen=True)
class FunnelSignals:
    """What each head of the funnel model (``engine.funnel_model``) learns from one matured
    decision: its outcomes, and its reward (``net_reward``) taken apart."""

    contacted: bool
    opened: bool
    clicked: bool
    purchased: bool          # a purchase was reported (organic or not)
    purchases: float         # EUR: the margin on the purchases reported (counted by the reward or not)
    counted: bool            # the reward counts them (window attribution, or a clicked message)
    offer_cost: float        # EUR: the offer's cost
    incentive: float         # EUR: the offer's cost, if the reward charges it
    credits: float           # EUR: the delivered, opened and clicked values credited
    unsubscribed: bool
    complained: bool


def funnel_signals(definition: RewardDefinition, outcomes: Iterable[tuple[OutcomeType, float]],
                   contacted: bool, offer_cost: float, contact_cost: float) -> FunnelSignals:
    """A decision's outcomes as the funnel model learns them. With any outcome reported, its
    reward is purchases (if counted) - incentive + credits - penalties - contact cost
    (``net_reward``)."""
    outcomes = list(outcomes)
    kinds = {kind for kind, _ in outcomes}
    credits = sum(value for kind, value in ((OutcomeType.DELIVERED, definition.delivered_value),
                                            (OutcomeType.OPENED, definition.opened_value),
                                            (OutcomeType.CLICKED, definition.clicked_value)) if kind in kinds)
    return FunnelSignals(
        contacted=contacted, opened=OutcomeType.OPENED in kinds, clicked=OutcomeType.CLICKED in kinds,
        purchased=OutcomeType.CONVERTED in kinds,
        purchases=definition.margin_rate * sum(v for kind, v in outcomes if kind is OutcomeType.CONVERTED),
        counted=counts_purchases(definition, kinds),
        offer_cost=offer_cost, incentive=offer_cost if paid_on(definition) in kinds else 0.0, credits=credits,
        unsubscribed=OutcomeType.UNSUBSCRIBED in kinds, complained=OutcomeType.COMPLAINED in kinds)


def reward_bounds(catalog: Catalog) -> tuple[float, float]:
    """The range a decision's reward is clipped to before the model learns it: from paying the
    dearest offer and contact with every penalty, to the margin of one order of the catalog's
    largest plausible value (``limits.max_order_value``) with every outcome's value. Reported
    values are bounded by that limit; the clip keeps one decision with many such orders, or a
    bug, from throwing the model's weights far."""
    r = catalog.reward
    costliest = max((o.cost for o in catalog.offers.values()), default=0.0)
    dearest = max((c.contact_cost for c in catalog.channels.values()), default=0.0)
    extras = [r.delivered_value, r.opened_value, r.clicked_value, r.default_reward]
    low = -(costliest + dearest + r.unsubscribe_penalty + r.complaint_penalty) + sum(min(v, 0.0) for v in extras)
    high = r.margin_rate * catalog.max_order_value + sum(max(v, 0.0) for v in extras)
    return low, high
