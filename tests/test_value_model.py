"""The value model's structures: direct, direct with send slots by open propensity (from its
best or its mean over the slots), open funnel, direct with the open propensity as a feature."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest

from engine.catalog import CatalogError, default_catalog_path, load_catalog
from engine.domain import Outcome, OutcomeType
from engine.pipeline import DecisionEngine
from engine.catalog import MODEL_STRUCTURES as STRUCTURES
from engine.value_model import ValueModel, action_labels, with_open_propensity
from support import T0, request, unconstrained

EMAIL_ONLY = dict(consented_channels=("email",))


def with_structure(catalog, structure):
    return dataclasses.replace(catalog, model=dataclasses.replace(catalog.model, structure=structure))


def trained(catalog, structure, open_slot="18-20", seed=1, buys_when_opened=True):
    """An engine that chose uniformly for 600 decisions over 40 email customers; only sends in
    ``open_slot`` were opened; new-collection emails bought when opened (or, if not
    ``buys_when_opened``, every other one whatever its slot)."""
    explore = dataclasses.replace(unconstrained(with_structure(catalog, structure)),
                                  exploration=dataclasses.replace(catalog.exploration, epsilon=1.0))
    e = DecisionEngine(explore, seed=seed, honour_request_time=True)
    when = T0
    for i in range(600):
        when += dt.timedelta(hours=1)
        d = e.decide(request(f"c{i % 40}", when, **EMAIL_ONLY))
        if d.action.no_contact:
            continue
        opened = d.action.send_slot == open_slot
        if opened:
            e.report_outcome(Outcome(d.event_id, "o", OutcomeType.OPENED, 0, when))
        if d.action.offer_id == "new_collection" and (opened if buys_when_opened else i % 2 == 0):
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
    return context, labels, engine.model.values(context, len(actions), labels)


def test_the_catalog_offers_every_structure_and_names_a_wrong_one(tmp_path):
    text = default_catalog_path().read_text()
    assert "structure = \"direct\"" in text
    for structure in STRUCTURES:
        path = tmp_path / f"{structure}.toml"
        path.write_text(text.replace('structure = "direct"', f'structure = "{structure}"'))
        assert load_catalog(path).model.structure == structure
    path.write_text(text.replace('structure = "direct"', 'structure = "funnel"'))
    with pytest.raises(CatalogError, match="key 'model.structure': expected one of"):
        load_catalog(path)
    path.write_text(text.replace('structure = "direct"', 'structure = "open_funnel"')
                    .replace("replicas = 1", "replicas = 4"))
    with pytest.raises(CatalogError, match="key 'model.replicas': expected 1 with model.structure"):
        load_catalog(path)


def test_open_slots_choose_the_send_time_by_opens_and_keep_the_offers_value(catalog):
    # Purchases do not depend on the slot here: only the opens tell the slots apart.
    e, when = trained(catalog, "direct_open_slots", buys_when_opened=False)
    context, labels, values = scored(e, when)
    slots = {label: v for label, v in zip(labels, values) if label.startswith("new_collection/email/")}
    assert max(slots, key=slots.get) == "new_collection/email/18-20"
    # The offer is worth the best the direct part says of it, at its best slot for opens.
    direct = e.model._predict(e.model._parts[0], context, len(labels))
    group = [i for i, label in enumerate(labels) if label.startswith("new_collection/email/")]
    assert max(values[group]) == pytest.approx(max(direct[group]))
    assert all(values[i] <= max(direct[group]) + 1e-12 for i in group)
    # The labels can also be read from the context itself.
    assert [label.rsplit("/", 1)[0] for label in action_labels(context)] == \
           [label.rsplit("/", 1)[0] for label in labels]
    assert np.allclose(e.model.values(context, len(labels)), values)


def test_mean_open_slots_keep_the_offers_mean_value_and_send_when_it_is_opened(catalog):
    e, when = trained(catalog, "mean_open_slots", buys_when_opened=False)
    context, labels, values = scored(e, when)
    group = [i for i, label in enumerate(labels) if label.startswith("new_collection/email/")]
    slots = {labels[i]: values[i] for i in group}
    assert max(slots, key=slots.get) == "new_collection/email/18-20"
    # Over its slots the offer is worth the direct part's mean, not its best: the mean is what
    # whether and what to send is decided on with slot_value = "mean".
    direct = e.model._predict(e.model._parts[0], context, len(labels))
    assert np.mean(values[group]) == pytest.approx(np.mean(direct[group]))
    assert np.mean(direct[group]) < max(direct[group]) - 1e-6
    # Each slot in proportion to its open propensity around that mean.
    p_open = np.clip(e.model._predict(e.model._parts[1], context, len(labels)), 1e-3, 1.0)[group]
    m = np.mean(direct[group])
    assert np.allclose(values[group], m + abs(m) * (p_open / p_open.mean() - 1.0))
    assert values[-1] == pytest.approx(direct[-1])  # no contact keeps the direct model's value


def test_the_open_funnel_values_the_opened_slot_and_no_contact_at_its_own_value(catalog):
    e, when = trained(catalog, "open_funnel")
    _, labels, values = scored(e, when)
    best = labels[int(np.argmax(values))]
    assert best == "new_collection/email/18-20"
    assert values[labels.index("no_contact")] == pytest.approx(0.0, abs=0.05)


def test_open_stacked_scores_with_each_contacts_open_propensity(catalog):
    e, when = trained(catalog, "open_stacked")
    context, labels, values = scored(e, when)
    assert labels[int(np.argmax(values))] == "new_collection/email/18-20"
    # The value part sees the open model's prediction: P on contacts only, the opened slot's highest.
    p = np.clip(e.model._predict(e.model._parts[1], context, len(labels)), 0.0, 1.0)
    p[labels.index("no_contact")] = 0.0
    stacked = with_open_propensity(json.loads(context), p)["_multi"]
    assert "P" not in stacked[labels.index("no_contact")]
    opened_slot = labels.index("new_collection/email/18-20")
    same_offer = [i for i, label in enumerate(labels) if label.startswith("new_collection/email/")]
    assert p[opened_slot] == max(p[same_offer]) > 0
    assert stacked[opened_slot]["P"] == {"p_open": round(p[opened_slot], 5)}
    # Without its open propensity the opened slot is worth less: the feature carries value.
    flat = with_open_propensity(json.loads(context), np.where(p > 0, p.mean(), 0.0))
    flat_values = e.model._predict(e.model._parts[0], json.dumps(flat), len(labels))
    assert flat_values[opened_slot] < values[opened_slot]


@pytest.mark.parametrize("structure", STRUCTURES)
def test_a_saved_model_loads_with_the_same_values_and_only_under_its_own_structure(catalog, structure):
    e, when = trained(catalog, structure)
    context, labels, values = scored(e, when)
    settings = with_structure(catalog, structure).model
    loaded = ValueModel(settings, model_data=e.model.serialize())
    assert np.allclose(loaded.values(context, len(labels), labels), values)
    other = next(s for s in STRUCTURES if s != structure)
    with pytest.raises(ValueError, match=f"model data is a '{structure}' model; model.structure is '{other}'"):
        ValueModel(dataclasses.replace(settings, structure=other), model_data=e.model.serialize())


def test_a_model_of_several_parts_learns_from_outcomes_not_a_cost_alone(catalog):
    model = ValueModel(with_structure(catalog, "open_funnel").model)
    with pytest.raises(ValueError, match="learns from outcomes"):
        model.learn_dsjson('{"_label_cost":0}')


def _line(chosen: int, reward: float) -> str:
    """A DSJSON decision over two actions (offer a or b, both certain) for one customer."""
    from engine.decision_log import DsjsonLine

    context = '{"U":{"segment=loyal":1},"_multi":[{"O":{"offer=a":1}},{"O":{"offer=b":1}}]}'
    return DsjsonLine.build("e", T0, context, np.array([0.5, 0.5]), chosen, "v", {}).with_cost(-reward)


def test_averaged_weights_serve_the_recent_average_and_lag_a_sudden_change():
    """model.average_updates: decisions are scored with a moving average of the weights over
    about that many updates. After a long steady run both models agree; after a short burst of
    contrary rewards the latest weights move and the averaged ones stay near the long-run value."""
    from engine.catalog import ModelSettings

    context = '{"U":{"segment=loyal":1},"_multi":[{"O":{"offer=a":1}},{"O":{"offer=b":1}}]}'
    settings = ModelSettings(learning_rate=0.5, power_t=0.0, importance_weighted=False, interactions=("UO",))
    latest = ValueModel(settings)
    averaged = ValueModel(dataclasses.replace(settings, average_updates=200))
    for i in range(3000):
        line = _line(i % 2, 1.0 if i % 2 == 0 else 0.0)
        latest.learn_dsjson(line)
        averaged.learn_dsjson(line)
    steady_latest, steady_avg = latest.values(context, 2), averaged.values(context, 2)
    assert steady_latest[0] == pytest.approx(1.0, abs=0.1) and steady_latest[1] == pytest.approx(0.0, abs=0.1)
    assert steady_avg == pytest.approx(steady_latest, abs=0.05)
    for _ in range(20):  # offer a suddenly pays -1
        latest.learn_dsjson(_line(0, -1.0))
        averaged.learn_dsjson(_line(0, -1.0))
    moved_latest, moved_avg = latest.values(context, 2), averaged.values(context, 2)
    assert moved_latest[0] < 0.3
    assert moved_avg[0] > 0.75
    # It saves the latest weights; a loaded model starts its average from them.
    loaded = ValueModel(dataclasses.replace(settings, average_updates=200), averaged.serialize())
    assert loaded.values(context, 2) == pytest.approx(moved_latest, abs=1e-6)


def test_decoupled_no_contact_learns_its_value_without_moving_the_contacts():
    """model.decouple_no_contact: no intercept and no linear customer or history terms, so
    rewards of no-contact decisions train only no contact's own weights. Coupled (the default),
    the same data moves the contacts' values through the weights every action shares."""
    from engine.catalog import ModelSettings
    from engine.decision_log import DsjsonLine

    context = ('{"U":{"segment=loyal":1,"basket":0.6},"H":{"email_7d":1},"_multi":['
               '{"O":{"offer=a":1},"C":{"channel=email":1},"T":{"slot=10-12":1}},'
               '{"O":{"offer=none":1},"C":{"channel=none":1}}]}')
    no_contact = DsjsonLine.build("e", T0, context, np.array([0.5, 0.5]), 1, "v", {}).with_cost(-0.5)
    contact = DsjsonLine.build("e", T0, context, np.array([0.5, 0.5]), 0, "v", {}).with_cost(-2.0)
    settings = ModelSettings(importance_weighted=False)
    coupled, decoupled = ValueModel(settings), ValueModel(dataclasses.replace(settings, decouple_no_contact=True))
    for _ in range(50):
        coupled.learn_dsjson(no_contact)
        decoupled.learn_dsjson(no_contact)
    assert coupled.values(context, 2)[1] == pytest.approx(0.5, abs=0.05)
    assert decoupled.values(context, 2)[1] == pytest.approx(0.5, abs=0.05)
    assert abs(coupled.values(context, 2)[0]) > 0.05     # moved by no contact's rewards
    assert decoupled.values(context, 2)[0] == 0.0         # untouched
    for _ in range(50):
        decoupled.learn_dsjson(contact)
    assert decoupled.values(context, 2) == pytest.approx([2.0, 0.5], abs=0.1)  # each learns its own
    assert "--noconstant" in decoupled.args and "--noconstant" not in coupled.args



def test_replay_relearns_past_decisions_and_keeps_a_bounded_uniform_buffer():
    """model.replay: each new decision is learned with ``replay`` past ones drawn from a
    reservoir of at most ``replay_buffer``. After a long run in which offer a paid 1, a burst of
    contrary rewards (-1) moves a replaying model less than one that learns the burst alone:
    its weights fit the whole record, not the latest cohort."""
    from engine.catalog import ModelSettings

    context = '{"U":{"segment=loyal":1},"_multi":[{"O":{"offer=a":1}},{"O":{"offer=b":1}}]}'
    settings = ModelSettings(learning_rate=0.5, power_t=0.0, importance_weighted=False, interactions=("UO",))
    plain = ValueModel(settings)
    replaying = ValueModel(dataclasses.replace(settings, replay=2, replay_buffer=500), seed=3)
    for i in range(2000):
        line = _line(i % 2, 1.0 if i % 2 == 0 else 0.0)
        plain.learn_dsjson(line)
        replaying.learn_dsjson(line)
    assert replaying.values(context, 2) == pytest.approx([1.0, 0.0], abs=0.1)
    assert len(replaying._replay) == 500 and replaying._replay_seen == 2000
    assert plain._replay == []
    for _ in range(40):  # offer a suddenly pays -1
        plain.learn_dsjson(_line(0, -1.0))
        replaying.learn_dsjson(_line(0, -1.0))
    assert plain.values(context, 2)[0] < -0.9      # the burst alone: its -1
    assert replaying.values(context, 2)[0] > 0.1   # the burst among the record's +1s
    # The reservoir holds a uniform sample of everything learned (~10 of the 40 burst lines
    # expected), not the latest 500 (all 40).
    assert sum(line == _line(0, -1.0) for line in replaying._replay) < 25
