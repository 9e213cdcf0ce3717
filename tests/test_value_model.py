"""The value model: one VW regression of the reward over the decision's features."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from engine.catalog import ModelSettings
from engine.domain import Outcome, OutcomeType
from engine.pipeline import DecisionEngine
from engine.value_model import ValueModel
from support import T0, request, unconstrained

EMAIL_ONLY = dict(consented_channels=("email",))


def trained(catalog, open_slot="18-20", seed=1):
    """An engine that chose uniformly for 600 decisions over 40 email customers; only sends in
    ``open_slot`` were opened, and new-collection emails bought when opened."""
    explore = dataclasses.replace(unconstrained(catalog), exploration=dataclasses.replace(catalog.exploration,
                                                                                          epsilon=1.0))
    e = DecisionEngine(explore, seed=seed, honour_request_time=True)
    when = T0
    for i in range(600):
        when += dt.timedelta(hours=1)
        d = e.decide(request(f"c{i % 40}", when, **EMAIL_ONLY))
        if d.action.no_contact or d.action.send_slot != open_slot:
            continue
        e.report_outcome(Outcome(d.event_id, "o", OutcomeType.OPENED, 0, when))
        if d.action.offer_id == "new_collection":
            e.report_outcome(Outcome(d.event_id, "c", OutcomeType.CLICKED, 0, when))
            e.report_outcome(Outcome(d.event_id, "b", OutcomeType.CONVERTED, 80.0, when))
    e.mature(when + e.catalog.attribution_window)
    return e, when + e.catalog.attribution_window


def scored(engine, when):
    """(context, labels, values) of a fresh customer's decision."""
    snap = engine.store.snapshot("fresh", when, dt.timedelta(days=7), [])
    from engine.feasibility import apply_constraints, feasible_actions

    r = request("fresh", when, **EMAIL_ONLY)
    actions, _ = apply_constraints(feasible_actions(r, engine.catalog, when), snap, engine.catalog, False, when)
    context = engine.features.context_json(r, snap.customer.history(when), actions)
    labels = [a.label for a in actions]
    return context, labels, engine.model.values(context, len(actions))


def test_the_model_learns_which_offer_and_send_slot_pay(catalog):
    e, when = trained(catalog)
    _, labels, values = scored(e, when)
    best = labels[int(np.argmax(values))]
    assert best == "new_collection/email/18-20"
    assert e.model.updates > 500


def test_a_saved_model_loads_with_the_same_values(catalog):
    e, when = trained(catalog)
    context, labels, values = scored(e, when)
    loaded = ValueModel(catalog.model, model_data=e.model.serialize())
    assert np.allclose(loaded.values(context, len(labels)), values)


def _line(chosen: int, reward: float, p: float = 0.5) -> str:
    """A DSJSON decision over two actions (offer a or b) for one customer, the chosen one logged
    with probability ``p``."""
    from engine.decision_log import DsjsonLine

    context = '{"U":{"segment=loyal":1},"_multi":[{"O":{"offer=a":1}},{"O":{"offer=b":1}}]}'
    probs = np.array([p, 1 - p]) if chosen == 0 else np.array([1 - p, p])
    return DsjsonLine.build("e", T0, context, probs, chosen, "v", {}).with_cost(-reward)


def test_without_importance_weights_a_rare_explored_reward_counts_once():
    """importance_weighted = false: plain least squares on the chosen action, so one reward
    logged at p = 0.001 moves the value as much as one logged at p = 0.5; VW's default weighs
    it by 1/p."""
    context = '{"U":{"segment=loyal":1},"_multi":[{"O":{"offer=a":1}},{"O":{"offer=b":1}}]}'
    settings = ModelSettings(learning_rate=0.5, power_t=0.0, importance_weighted=False, interactions=("UO",))
    plain, weighted = ValueModel(settings), ValueModel(dataclasses.replace(settings, importance_weighted=True))
    for model in (plain, weighted):
        for _ in range(20):
            model.learn_dsjson(_line(0, 0.0, p=0.5))
        model.learn_dsjson(_line(0, 10.0, p=0.001))
    assert 0.0 < plain.values(context, 2)[0] < 5.0
    assert weighted.values(context, 2)[0] > plain.values(context, 2)[0]


def test_kept_action_examples_score_exactly_as_a_fresh_parse(catalog):
    """values_parts keeps each action set's parsed examples across calls, and across learning:
    every value is the one a parse of the whole context gives, to the last bit."""
    from engine.feasibility import feasible_actions

    e = DecisionEngine(catalog, seed=2, honour_request_time=True)
    model = e.model
    for i in range(40):
        r = request(f"p{i}", T0 + dt.timedelta(hours=7 * i), consented_channels=("email", "sms")[: 1 + i % 2])
        actions = feasible_actions(r, e.catalog, r.decision_time)
        history = e.store.snapshot(r.customer_id, r.decision_time, dt.timedelta(days=7), []).customer.history(
            r.decision_time)
        head, multi = e.features.context_parts(r, history, actions.actions, actions.labels)
        n = len(actions.actions)
        assert np.array_equal(model.values_parts(head, multi, n), model.values(f"{head}{multi}]}}", n))
        if i % 10 == 5:  # learning between calls changes the weights, not the kept examples
            d = e.decide(request(f"learner{i}", T0, **EMAIL_ONLY))
            e.report_outcome(Outcome(d.event_id, "b", OutcomeType.CONVERTED, 80.0, T0))
            e.mature(T0 + catalog.attribution_window)
    assert model.updates >= 3 and len(model._actions) >= 2
