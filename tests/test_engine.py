import dataclasses
import datetime as dt
import json
import time

import numpy as np
import pytest

from engine.decision_log import log_files
from engine.domain import (
    AttributionClosed, Outcome, OutcomeType, RequestError, UnknownEvent,
)
from engine.pipeline import MATURE_RECHECK_SECONDS, DecisionEngine
from engine.feasibility import feasible_actions
from support import T0, history, request, unconstrained


def read_lines(directory, prefix):
    return [json.loads(line) for f in log_files(directory, prefix) for line in f.read_text().splitlines()]


def test_decision_is_logged_with_exact_probability(engine, tmp_path):
    d = engine.decide(request())
    [record] = read_lines(tmp_path / "logs", "decisions")
    assert record["EventId"] == d.event_id
    assert record["_label_probability"] == pytest.approx(d.probability)
    assert record["p"][0] == record["_label_probability"]
    assert sorted(record["a"]) == list(range(1, d.feasible_actions + 1))
    assert sum(record["p"]) == pytest.approx(1.0)
    assert record["_nba"]["actions"][record["_labelIndex"]] == d.action.label
    assert len(record["c"]["_multi"]) == d.feasible_actions


def test_same_seed_same_decisions(catalog):
    def run():
        e = DecisionEngine(catalog, seed=42, honour_request_time=True)
        return [(d.event_id, d.action) for d in
                (e.decide(request(f"c{i}", T0 + dt.timedelta(minutes=i))) for i in range(30))]
    assert run() == run()


def test_a_cold_engine_sends_the_catalogs_default_contact(catalog):
    """No model yet: with exploration.default_offer set, the greedy choice is that offer on the
    first default channel the customer can get, at any send slot, logged with its probability."""
    default = dataclasses.replace(catalog.exploration, default_offer="new_collection",
                                  default_channels=("sms", "email"))
    e = DecisionEngine(dataclasses.replace(unconstrained(catalog), exploration=default), seed=3,
                       honour_request_time=True)
    decisions = [e.decide(request(f"c{i}", T0 + dt.timedelta(minutes=i), consented_channels=("email", "push")))
                 for i in range(200)]
    greedy = [d for d in decisions if not d.explored]
    assert len(greedy) > 150
    assert {(d.action.offer_id, d.action.channel) for d in greedy} == {("new_collection", "email")}
    slots = {d.action.send_slot for d in greedy}
    assert len(slots) > 3  # spread over the slots, the model cannot tell them apart
    n_slots = sum(a.label.startswith("new_collection/email/") for a in
                  feasible_actions(request(consented_channels=("email", "push")), e.catalog, T0).actions)
    eps, k = default.epsilon, greedy[0].feasible_actions
    assert greedy[0].probability == pytest.approx((1 - eps) / n_slots + eps / k)
    # Without a default contact, the same cold engine does not contact unless it explores.
    none = dataclasses.replace(catalog.exploration, default_offer=None, default_channels=())
    e = DecisionEngine(dataclasses.replace(unconstrained(catalog), exploration=none), seed=3,
                       honour_request_time=True)
    greedy = [d for d in (e.decide(request(f"c{i}", T0)) for i in range(50)) if not d.explored]
    assert len(greedy) > 40 and all(d.action.no_contact for d in greedy)


def test_ranking_is_best_first_and_top_k(engine, catalog):
    d = engine.decide(request())
    values = [s.expected_value for s in d.ranking]
    assert values == sorted(values, reverse=True)
    assert len(d.ranking) == catalog.exploration.top_k


def test_duplicate_outcome_counted_once(engine, tmp_path):
    d = engine.decide(request())
    o = Outcome(d.event_id, "buy-1", OutcomeType.CONVERTED, 80.0, T0 + dt.timedelta(hours=1))
    assert engine.report_outcome(o).duplicate is False
    assert engine.report_outcome(o).duplicate is True
    assert len(read_lines(tmp_path / "logs", "outcomes")) == 1
    counters = engine.policy().counters
    assert counters["outcomes"] == 1 and counters["duplicate_outcomes"] == 1


def test_unknown_event_and_closed_window(engine, catalog):
    with pytest.raises(UnknownEvent):
        engine.report_outcome(Outcome("nope", "o", OutcomeType.OPENED, 0, T0))
    d = engine.decide(request())
    later = T0 + catalog.attribution_window + dt.timedelta(minutes=1)
    engine.mature(later)
    with pytest.raises(AttributionClosed):
        engine.report_outcome(Outcome(d.event_id, "late", OutcomeType.OPENED, 0, later))


def test_matured_decision_is_learned_with_joined_reward(engine, catalog):
    d = engine.decide(request())
    engine.report_outcome(Outcome(d.event_id, "b", OutcomeType.CONVERTED, 100.0, T0 + dt.timedelta(hours=5)))
    assert engine.mature(T0 + dt.timedelta(days=6)) == 0
    assert engine.policy().counters["pending"] == 1
    assert engine.mature(T0 + catalog.attribution_window) == 1
    assert engine.model.updates == 1
    assert engine.policy().counters["learned"] == 1 and engine.policy().counters["pending"] == 0


def test_the_store_is_asked_for_matured_decisions_only_when_a_window_can_have_closed(catalog):
    """Before each decision (simulated time) the engine learns what has matured; it knows
    when the next window closes, so a campaign's decisions do not each cost a trip to the store.
    None is learned late: every matured decision is learned before the next decision."""
    from engine.state import VolatileStateStore

    class Counting(VolatileStateStore):
        pops = 0

        def pop_matured(self, now, limit=10_000):
            Counting.pops += 1
            return super().pop_matured(now, limit)

    store = Counting()
    e = DecisionEngine(unconstrained(catalog), seed=3, store=store, honour_request_time=True)
    started = time.monotonic()
    for i in range(200):  # a campaign over ten hours: nothing matures
        e.decide(request(f"c{i}", T0 + dt.timedelta(minutes=3 * i)))
    # The first look, and a look again each wall-clock second at most (other processes).
    assert Counting.pops <= 2 + (time.monotonic() - started) / MATURE_RECHECK_SECONDS
    window = catalog.attribution_window
    for i in range(200):  # a week later, the same minutes: each decision's window has just closed
        e.decide(request(f"d{i}", T0 + window + dt.timedelta(minutes=3 * i)))
        assert e.policy().counters["learned"] == i + 1
    assert Counting.pops >= 200


def test_online_learning_moves_values_toward_rewards(catalog):
    """Reward only 'new_collection' by email: the model comes to rank it first."""
    e = DecisionEngine(unconstrained(catalog), seed=5, honour_request_time=True)
    when = T0
    for i in range(600):
        when = when + dt.timedelta(hours=1)
        d = e.decide(request(f"c{i % 50}", when, consented_channels=("email",)))
        if d.action.offer_id == "new_collection":
            e.report_outcome(Outcome(d.event_id, "c", OutcomeType.CLICKED, 0, when))
            e.report_outcome(Outcome(d.event_id, "b", OutcomeType.CONVERTED, 100.0, when))
    e.mature(when + catalog.attribution_window)
    d = e.decide(request("fresh", when + catalog.attribution_window, consented_channels=("email",)))
    assert [r.action.offer_id for r in d.ranking[:3]] == ["new_collection"] * 3
    # Every other action earns at most nothing (contact cost): a value above 1 EUR can only come
    # from the conversions (the default model is a cautious least squares: ~35 EUR a conversion,
    # learned at the catalog's rate, decaying as 1 / t^power_t).
    assert d.ranking[0].expected_value > 1.0


def test_history_features_count_contacts(engine):
    first = engine.decide(request("c-h", consented_channels=("email",), candidate_offers=("new_collection",)))
    seen = history(engine.store, "c-h", T0 + dt.timedelta(days=1))
    if first.action.no_contact:
        assert seen.contacts_7d == {}
    else:
        assert seen.contacts_7d == {"email": 1}
        assert seen.hours_since_contact is not None


def test_the_customers_own_responses_become_history_features(catalog, tmp_path):
    """Two emails, one opened: the next decision's context says so (opened 1, ignored 1)."""
    from engine.constraints import ControlGroup, Constraints

    fixed = dataclasses.replace(catalog, constraints=Constraints(control=ControlGroup(
        fraction=1.0, action=("new_collection", "email", "10-12"))))
    e = DecisionEngine(fixed, seed=3, honour_request_time=True, log_dir=tmp_path / "logs")
    week = dt.timedelta(days=7)
    first = e.decide(request("c-r", T0, consented_channels=("email",)))
    e.report_outcome(Outcome(first.event_id, "o", OutcomeType.OPENED, 0, T0 + dt.timedelta(hours=3)))
    e.report_outcome(Outcome(first.event_id, "c", OutcomeType.CLICKED, 0, T0 + dt.timedelta(hours=4)))
    e.decide(request("c-r", T0 + week, consented_channels=("email",)))
    e.decide(request("c-r", T0 + 2 * week, consented_channels=("email",)))
    contexts = [line["c"]["H"] for line in read_lines(tmp_path / "logs", "decisions")]
    assert "email_opened" not in contexts[0]
    assert contexts[1]["email_opened"] == pytest.approx(np.log1p(1))
    assert contexts[1]["email_ignored"] == 0.0 and contexts[1]["email_clicked"] == pytest.approx(np.log1p(1))
    assert contexts[2]["email_ignored"] == pytest.approx(np.log1p(1))  # the second email, never opened


BAD_REQUESTS = [
    (dict(customer_id=""), "customer_id"),
    (dict(customer_id="x" * 200), "customer_id"),
    (dict(numeric_features={"basket": float("nan")}), "numeric_features['basket']"),
    (dict(numeric_features={"basket": float("inf")}), "numeric_features['basket']"),
    (dict(numeric_features={"bad name": 1.0}), "numeric_features"),
    (dict(numeric_features={f"f{i}": 1.0 for i in range(300)}), "numeric_features"),
    (dict(consented_channels=("fax",)), "consented_channels"),
    (dict(allowed_channels=("fax",)), "allowed_channels"),
    (dict(candidate_offers=("discount_99",)), "candidate_offers"),
    (dict(timezone="Mars/Olympus"), "timezone"),
    (dict(inbound=True, allowed_channels=()), "allowed_channels"),
    (dict(categorical_features={"segment": ""}), "categorical_features['segment']"),
]


@pytest.mark.parametrize("change,field", BAD_REQUESTS)
def test_bad_request_names_field_and_changes_nothing(engine, tmp_path, change, field):
    good = request()
    bad = dataclasses.replace(good, **change)
    before = engine.policy().counters
    with pytest.raises(RequestError) as err:
        engine.decide(bad)
    assert str(err.value).startswith(field)
    after = engine.policy().counters
    assert after["rejected"] == before["rejected"] + 1
    assert {k: v for k, v in after.items() if k != "rejected"} == \
           {k: v for k, v in before.items() if k != "rejected"}
    assert read_lines(tmp_path / "logs", "decisions") == []
    assert history(engine.store, bad.customer_id or "c-1", T0).contacts_7d == {}


@pytest.mark.parametrize("outcome,field", [
    (Outcome("", "o", OutcomeType.OPENED), "event_id"),
    (Outcome("e", "", OutcomeType.OPENED), "outcome_id"),
    (Outcome("e", "o", OutcomeType.CONVERTED, -5.0), "value"),
    (Outcome("e", "o", OutcomeType.CONVERTED, float("nan")), "value"),
])
def test_bad_outcome_names_field(engine, outcome, field):
    with pytest.raises(RequestError) as err:
        engine.report_outcome(outcome)
    assert err.value.field == field


def test_history_days_add_longer_contact_counts_and_keep_contacts_that_long(catalog, tmp_path):
    """model.history_days = 28: four weekly emails; the fourth decision's context counts the
    three before it over 28 days (and one over 7), and the pressure keeps contacts 28 days."""
    from engine.catalog import CatalogError, default_catalog_path, load_catalog
    from engine.constraints import ControlGroup, Constraints

    long = dataclasses.replace(catalog, model=dataclasses.replace(catalog.model, history_days=28))
    fixed = dataclasses.replace(long, constraints=Constraints(control=ControlGroup(
        fraction=1.0, action=("new_collection", "email", "10-12")), pressure=dataclasses.replace(
            long.constraints.pressure, keep=dt.timedelta(days=28))))
    e = DecisionEngine(fixed, seed=3, honour_request_time=True, log_dir=tmp_path / "logs")
    for k in range(4):
        e.decide(request("c-l", T0 + k * dt.timedelta(days=7), consented_channels=("email",)))
    last = [line["c"]["H"] for line in read_lines(tmp_path / "logs", "decisions")][-1]
    assert last["email_28d"] == 3.0 and last["email_7d"] == 1.0 and last["sms_28d"] == 0.0
    assert "email_28d" not in e.features.context_json(
        request("x"), e.store.snapshot("c-l", T0, dt.timedelta(days=7), []).customer.history(T0), ())

    text = default_catalog_path().read_text()
    assert load_catalog(default_catalog_path()).constraints.pressure.horizon == dt.timedelta(days=7)
    path = tmp_path / "catalog.toml"
    path.write_text(text + "\n[model]\nhistory_days = 28\n")
    assert load_catalog(path).constraints.pressure.horizon == dt.timedelta(days=28)
    path.write_text(text + "\n[model]\nhistory_days = 5\n")
    with pytest.raises(CatalogError, match="key 'model.history_days': expected an integer from 7"):
        load_catalog(path)
