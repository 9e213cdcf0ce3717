"""Pressure, budgets, pacing, control group and safe mode, through the engine."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from engine.catalog import CatalogError, load_catalog, parse_catalog
from engine.settings import read_toml
from engine.constraints import Budget, BudgetKey, BudgetUsage, ControlGroup, Pacer
from engine.domain import ExclusionReason, Outcome, OutcomeType
from engine.pipeline import DecisionEngine
from support import T0, request


def with_constraints(catalog, **changes):
    return dataclasses.replace(catalog, constraints=dataclasses.replace(catalog.constraints, **changes))


def greedy(catalog):
    """Uniform exploration: every feasible action equally likely (contacts are frequent)."""
    return dataclasses.replace(catalog, exploration=dataclasses.replace(catalog.exploration, epsilon=1.0))


def test_pressure_excludes_channels_with_reasons_and_no_decision_breaks_a_cap(catalog):
    e = DecisionEngine(greedy(catalog), seed=2, honour_request_time=True)
    sent, reasons = [], set()
    for hour in range(0, 24 * 7, 3):
        d = e.decide(request("c-p", T0 + dt.timedelta(hours=hour)))
        reasons |= {x.reason for x in d.exclusions}
        if not d.action.no_contact:
            sent.append((d.action.send_at, d.action.channel))
            for x in d.exclusions:
                assert x.reason is not ExclusionReason.PRESSURE or x.detail
    assert ExclusionReason.PRESSURE in reasons
    sent.sort()
    assert all(b[0] - a[0] >= dt.timedelta(hours=24) for a, b in zip(sent, sent[1:]))
    week = [s for s in sent if s[0] < sent[0][0] + dt.timedelta(days=7)]
    assert len(week) <= 3 and sum(ch == "email" for _, ch in week) <= 2 and sum(ch == "sms" for _, ch in week) <= 1


def test_a_pressure_exclusion_names_the_cap(catalog):
    e = DecisionEngine(greedy(catalog), seed=4, honour_request_time=True)
    d = e.decide(request("c-q", T0, candidate_offers=("new_collection",), consented_channels=("email",)))
    while d.action.no_contact:  # uniform exploration may pick no contact; try the next hour
        d = e.decide(request("c-q", d.decision_time + dt.timedelta(hours=1),
                             candidate_offers=("new_collection",), consented_channels=("email",)))
    later = e.decide(request("c-q", d.decision_time + dt.timedelta(minutes=5), consented_channels=("email",)))
    pressure = [x for x in later.exclusions if x.reason is ExclusionReason.PRESSURE]
    assert pressure and any("min_gap" in x.detail for x in pressure)


def test_budget_excludes_offers_it_cannot_cover_and_is_never_overspent(catalog):
    small = Budget("promo", 40.0, dt.timedelta(days=30), T0 - dt.timedelta(days=1),
                   ("discount_10", "discount_15", "free_shipping", "birthday_gift"), pacing=False)
    cat = with_constraints(greedy(catalog), budgets=(small,))
    e = DecisionEngine(cat, seed=3, honour_request_time=True)
    issued, budget_reasons = 0.0, []
    for i in range(300):
        d = e.decide(request(f"b{i}", T0 + dt.timedelta(minutes=i)))
        if not d.action.no_contact:
            issued += cat.offers[d.action.offer_id].cost if d.action.offer_id != "new_collection" else 0
        budget_reasons += [x for x in d.exclusions if x.reason is ExclusionReason.BUDGET]
    assert issued <= 40.0
    assert budget_reasons and "EUR left" in budget_reasons[-1].detail
    (state,) = e.policy().budgets
    assert state.usage.spend_cents == round(issued * 100) and state.usage.remaining_cents >= 0


def test_redemption_settles_and_a_closed_window_releases(catalog):
    budget = Budget("promo", 100.0, dt.timedelta(days=30), T0 - dt.timedelta(days=1), ("discount_10",),
                    pacing=False)
    cat = with_constraints(catalog, budgets=(budget,))
    e = DecisionEngine(cat, seed=1, honour_request_time=True)
    events = []
    k = 0
    while len(events) < 2:
        k += 1
        d = e.decide(request(f"r{k}", T0, candidate_offers=("discount_10",), consented_channels=("email",)))
        if not d.action.no_contact:
            events.append(d.event_id)
    e.report_outcome(Outcome(events[0], "x", OutcomeType.REDEEMED, 0.0, T0 + dt.timedelta(hours=3)))
    usage = e.policy().budgets[0].usage
    assert (usage.paid_cents, usage.committed_cents) == (1000, 1000)
    e.mature(T0 + cat.attribution_window)
    usage = e.policy().budgets[0].usage
    assert (usage.paid_cents, usage.committed_cents) == (1000, 0)


def test_pacing_raises_the_shadow_price_when_ahead_and_lowers_it_when_behind():
    start = T0
    budget = Budget("b", 1000.0, dt.timedelta(days=10), start, ("discount_10",), pacing_step=0.5,
                    pacing_lead=dt.timedelta(0))
    pacer = Pacer((budget,))
    key = BudgetKey("b", 0, budget.amount_cents)
    now = start + dt.timedelta(days=1)  # plan: 100 EUR
    for _ in range(10):
        lam = pacer.update(BudgetUsage(key, 0, 50_000), now)  # 500 EUR spent: far ahead
    assert lam == pytest.approx(10 * 0.5 * 0.4)
    for _ in range(100):
        lam = pacer.update(BudgetUsage(key, 0, 0), now)  # nothing spent: behind
    assert lam == 0.0


def test_the_shadow_price_steers_away_from_costly_offers(catalog, tmp_path):
    """Softmax exploration over value - lambda x cost: once spend runs ahead of plan, the
    discounts' probabilities collapse; with spend on plan they equal the free offer's."""
    budget = Budget("promo", 1000.0, dt.timedelta(days=30), T0, ("discount_10",),
                    pacing_step=5.0, pacing_lead=dt.timedelta(0), pacing_slack=1.0)  # no gate
    softmax = dataclasses.replace(catalog.exploration, algorithm="softmax", softmax_lambda=1.0)
    cat = with_constraints(dataclasses.replace(catalog, exploration=softmax), budgets=(budget,))

    def probabilities(ahead: bool, log_dir) -> dict[str, float]:
        e = DecisionEngine(cat, seed=1, honour_request_time=True, log_dir=log_dir)
        if ahead:  # 500 EUR committed on day 0 of a 30-day plan
            e.store.reserve(_dummy_commit(e, budget, 50_000), cat.constraints.pressure)
        e.decide(request("s1", T0 + dt.timedelta(hours=1), candidate_offers=("discount_10", "new_collection"),
                         consented_channels=("email",)))
        e.close()
        (line,) = [json.loads(x) for p in log_dir.glob("decisions-*.jsonl") for x in p.read_text().splitlines()]
        labels = line["_nba"]["actions"]
        by_offer: dict[str, float] = {}
        for action_id, prob in zip(line["a"], line["p"]):
            offer = labels[action_id - 1].split("/")[0]
            by_offer[offer] = by_offer.get(offer, 0.0) + prob
        return by_offer, e.policy().budgets[0].shadow_price

    on_plan, lam0 = probabilities(False, tmp_path / "a")
    ahead, lam1 = probabilities(True, tmp_path / "b")
    assert lam0 == 0.0 and lam1 > 0.5
    assert on_plan["discount_10"] == pytest.approx(on_plan["new_collection"])
    assert ahead["discount_10"] < 0.05 * ahead["new_collection"]


def test_no_decision_runs_ahead_of_the_plan_plus_slack(catalog):
    """Uniform exploration ignores values: the pacing gate still holds spend to the plan."""
    budget = Budget("promo", 1000.0, dt.timedelta(days=10), T0, ("discount_10", "discount_15"),
                    pacing_lead=dt.timedelta(days=1), pacing_slack=0.05)  # plan 100 + 50 by day 0
    cat = with_constraints(greedy(catalog), budgets=(budget,))
    e = DecisionEngine(cat, seed=2, honour_request_time=True)
    paced = []
    for i in range(400):
        d = e.decide(request(f"g{i}", T0 + dt.timedelta(minutes=i)))
        paced += [x for x in d.exclusions if x.reason is ExclusionReason.BUDGET and "paced" in x.detail]
    (state,) = e.policy().budgets
    limit = state.plan + 0.05 * 1000  # the plan moves with the clock (400 minutes here)
    assert paced and limit - 15 < state.usage.spend_cents / 100 <= limit


def _dummy_commit(e, budget, cents):
    from engine.constraints import Commitment
    from engine.decision_log import DsjsonLine
    from engine.state import PendingDecision

    key = budget.key(T0)
    return PendingDecision(event_id="seed", customer_id="other", decision_time=T0,
                           matures_at=T0 + dt.timedelta(days=7), dsjson=DsjsonLine('"c":{}'),
                           offer_cost=cents / 100, contact_cost=0.0, contacted=False,
                           commitment=Commitment(key, cents))


def test_control_group_is_stable_flagged_logged_and_about_the_right_size(catalog, tmp_path):
    control = ControlGroup(fraction=0.2, salt="s")
    assert control.contains("abc") == ControlGroup(fraction=0.2, salt="s").contains("abc")
    share = sum(control.contains(f"c{i}") for i in range(10_000)) / 10_000
    assert 0.18 < share < 0.22
    e = DecisionEngine(with_constraints(catalog, control=control), seed=1, honour_request_time=True,
                       log_dir=tmp_path)
    decisions = [e.decide(request(f"c{i}", T0 + dt.timedelta(minutes=i))) for i in range(200)]
    flagged = [d for d in decisions if d.control]
    assert {d.customer_id for d in flagged} == {f"c{i}" for i in range(200) if control.contains(f"c{i}")}
    assert all(d.action.no_contact and d.probability == 1.0 for d in flagged)
    assert e.policy().counters["control"] == len(flagged)
    e.close()
    logged = [json.loads(line) for p in sorted(tmp_path.glob("decisions-*.jsonl")) for line in p.read_text().splitlines()]
    assert sum(line["_nba"]["control"] for line in logged) == len(flagged)


def test_control_group_with_a_fixed_action(catalog):
    control = ControlGroup(fraction=1.0, salt="s", action=("discount_10", "email", "10-12"))
    e = DecisionEngine(with_constraints(catalog, control=control), seed=1, honour_request_time=True)
    d = e.decide(request("c1", T0))
    assert d.control and (d.action.offer_id, d.action.channel, d.action.send_slot) == ("discount_10", "email", "10-12")


def test_unreachable_redis_gives_safe_mode_decisions(catalog, tmp_path):
    from harness.redis_servers import free_port
    from engine.redis_store import RedisStateStore

    store = RedisStateStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    e = DecisionEngine(catalog, store=store, seed=1, honour_request_time=True, log_dir=tmp_path)
    d = e.decide(request("c1", T0))
    assert d.fallback and d.action.no_contact and d.probability == 1.0
    inbound = e.decide(request("c1", T0, inbound=True, allowed_channels=("web",)))
    assert inbound.fallback and inbound.action.offer_id == "new_collection"  # the catalog's free offer
    policy = e.policy()
    assert policy.counters["fallback"] == 2 and policy.budgets[0].usage is None
    e.close()


def test_safe_mode_ends_by_itself_when_redis_comes_back(catalog):
    from harness.redis_servers import RedisServer
    from engine.redis_store import RedisStateStore

    with RedisServer() as server:
        store = RedisStateStore(server.url, prefix="back", retry_after=0.1)
        e = DecisionEngine(catalog, store=store, seed=1, honour_request_time=True)
        assert not e.decide(request("c1", T0)).fallback
        server.kill()
        assert e.decide(request("c2", T0)).fallback
        server.start()
        import time

        deadline = time.monotonic() + 2.0
        while e.decide(request("c3", T0)).fallback:
            assert time.monotonic() < deadline, "still in safe mode 2 s after Redis came back"
            time.sleep(0.05)


BAD_CONSTRAINTS = [
    ("pressure.caps", {"pressure": {"caps": [{"id": "x", "channels": ["fax"], "max": 1, "window_days": 7}]}},
     "pressure.caps[0].channels"),
    ("cap without max", {"pressure": {"caps": [{"id": "x", "window_days": 7}]}}, "pressure.caps[0].max"),
    ("gap", {"pressure": {"min_gap_hours": -1}}, "pressure.min_gap_hours"),
    ("budget amount", {"budgets": {"b": {"amount": -5, "period_days": 30}}}, "budgets.b.amount"),
    ("budget offer", {"budgets": {"b": {"amount": 5, "period_days": 30, "offers": ["nope"]}}}, "budgets.b.offers"),
    ("budget start", {"budgets": {"b": {"amount": 5, "period_days": 30, "start": "monday"}}}, "budgets.b.start"),
    ("control", {"control": {"fraction": 1.5}}, "control.fraction"),
    ("control action", {"control": {"action": {"offer": "discount_10", "channel": "email", "send_slot": "7-9"}}},
     "control.action.send_slot"),
    ("outage", {"outage": {"inbound_offer": "discount_10"}}, "outage.inbound_offer"),
]


@pytest.mark.parametrize("name,change,key", BAD_CONSTRAINTS, ids=[b[0] for b in BAD_CONSTRAINTS])
def test_bad_constraint_settings_name_the_key(name, change, key):
    from engine.catalog import default_catalog_path

    data, _ = read_toml(default_catalog_path())
    for section, value in change.items():
        data[section] = value
    with pytest.raises(CatalogError) as err:
        parse_catalog(data, source="c.toml")
    assert key in str(err.value)


def test_default_catalog_has_the_briefs_caps():
    pressure = load_catalog().constraints.pressure
    caps = {c.id: (c.channels, c.max_contacts, c.window.days) for c in pressure.caps}
    assert caps == {"email_week": (("email",), 2, 7), "sms_week": (("sms",), 1, 7),
                    "all_week": (("email", "sms", "push"), 3, 7)}
    assert pressure.min_gap == dt.timedelta(hours=24)
