"""One contract for every state store: in memory, SQLite, one Redis server, a 3-node Redis Cluster.

The Redis backends run against real ``redis-server`` processes started by the fixtures on free
loopback ports (no mocks).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest

from engine.constraints import BudgetKey, Cap, Commitment, Pressure
from engine.decision_log import DsjsonLine
from engine.domain import AttributionClosed, OutcomeType, UnknownEvent
from engine.state import VolatileStateStore, PendingDecision
from support import T0

PRESSURE = Pressure(
    caps=(Cap("email_week", ("email",), 2, dt.timedelta(days=7)),
          Cap("all_week", ("email", "sms"), 3, dt.timedelta(days=7))),
    min_gap=dt.timedelta(hours=24),
)
WINDOW = dt.timedelta(days=7)
BUDGET = BudgetKey("promo", 0, 10_000)  # 100.00 EUR


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster"])
def store(request, tmp_path):
    if request.param == "memory":
        yield VolatileStateStore()
        return
    if request.param == "sqlite":
        from engine.sqlite_store import SQLiteStateStore

        s = SQLiteStateStore(tmp_path / "state" / "state.sqlite3")
        yield s
        s.close()
        return
    from engine.redis_store import RedisStateStore

    server = request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")
    s = RedisStateStore(server.url, cluster=request.param == "cluster", prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def pending(customer="c1", when=T0, channel="email", send_at=None, cost_cents=0, event=None):
    contacted = channel is not None
    return PendingDecision(
        event_id=event or uuid.uuid4().hex, customer_id=customer, decision_time=when,
        matures_at=when + WINDOW, dsjson=DsjsonLine('"EventId":"x","c":{}'),
        offer_cost=cost_cents / 100, contact_cost=0.01 if contacted else 0.0, contacted=contacted,
        channel=channel, send_at=(send_at or when) if contacted else None,
        commitment=Commitment(BUDGET, cost_cents) if cost_cents else None,
    )


def snap(store, customer="c1", when=T0):
    return store.snapshot(customer, when, WINDOW, [BUDGET])


def test_a_fresh_customer_has_no_history_and_budgets_start_empty(store):
    s = snap(store)
    assert s.customer.contacts == () and s.customer.last_response is None
    usage = s.budgets["promo"]
    assert (usage.paid_cents, usage.committed_cents, usage.remaining_cents) == (0, 0, 10_000)


def test_a_reserved_contact_is_in_the_next_snapshot_and_the_history(store):
    assert store.reserve(pending(send_at=T0 + dt.timedelta(hours=2)), PRESSURE) is None
    s = snap(store, when=T0 + dt.timedelta(hours=3))
    assert s.customer.contacts == ((T0 + dt.timedelta(hours=2), "email"),)
    history = s.customer.history(T0 + dt.timedelta(hours=3))
    assert history.contacts_7d == {"email": 1}
    assert history.hours_since_contact == pytest.approx(1.0)
    assert store.pending_count() == 1


def test_contacts_are_kept_as_long_as_the_history_features_look_back(store):
    """Pressure.keep (catalog model.history_days): weekly contacts for four weeks; with 28 days
    kept, the last snapshot and history see all of them, with 7 days only the last week's."""
    import dataclasses

    week = dt.timedelta(days=7)
    for keep, expected in ((dt.timedelta(days=28), 4), (week, 1)):
        customer = f"keep{keep.days}"
        pressure = dataclasses.replace(PRESSURE, keep=keep)
        for k in range(4):
            assert store.reserve(pending(customer, when=T0 + k * week), pressure) is None
        now = T0 + 3 * week + dt.timedelta(hours=1)
        s = store.snapshot(customer, now, pressure.horizon, [])
        assert len(s.customer.contacts) == expected
        history = s.customer.history(now, keep.days)
        assert history.contacts_7d == {"email": 1} and history.hours_since_contact == pytest.approx(1.0)
        assert history.contacts_long == ({"email": 4} if keep.days > 7 else {})


def test_caps_and_min_gap_refuse_and_a_refusal_changes_nothing(store):
    assert store.reserve(pending(when=T0), PRESSURE) is None
    why = store.reserve(pending(when=T0 + dt.timedelta(hours=23)), PRESSURE)
    assert why and why.startswith("min_gap")
    assert store.reserve(pending(when=T0 + dt.timedelta(days=2)), PRESSURE) is None
    before = snap(store, when=T0 + dt.timedelta(days=4))
    why = store.reserve(pending(when=T0 + dt.timedelta(days=4)), PRESSURE)
    assert why and why.startswith("cap email_week")
    # SMS is not capped by the email cap, but all_week counts it: 2 emails + 1 SMS = 3.
    assert store.reserve(pending(when=T0 + dt.timedelta(days=4), channel="sms"), PRESSURE) is None
    why = store.reserve(pending(when=T0 + dt.timedelta(days=6), channel="sms"), PRESSURE)
    assert why and why.startswith("cap all_week")
    after = snap(store, when=T0 + dt.timedelta(days=4))
    assert len(after.customer.contacts) == len(before.customer.contacts) + 1
    assert store.pending_count() == 3
    # A week after the first contacts the window has moved on.
    assert store.reserve(pending(when=T0 + dt.timedelta(days=9, hours=1)), PRESSURE) is None


def test_a_future_send_time_counts_for_the_caps(store):
    """A contact scheduled for tomorrow blocks a contact today within the gap."""
    assert store.reserve(pending(send_at=T0 + dt.timedelta(hours=20)), PRESSURE) is None
    assert store.reserve(pending(send_at=T0), PRESSURE).startswith("min_gap")


def test_a_budget_is_never_overspent_and_a_refusal_changes_nothing(store):
    for k in range(6):  # 6 x 15 EUR = 90 EUR committed
        assert store.reserve(pending(customer=f"b{k}", cost_cents=1500), PRESSURE) is None
    why = store.reserve(pending(customer="b9", cost_cents=1500), PRESSURE)
    assert why and why.startswith("budget promo: 10.00 EUR left")
    assert snap(store, customer="b9").customer.contacts == ()  # the contact was not recorded
    assert store.reserve(pending(customer="b8", cost_cents=1000), PRESSURE) is None
    (usage,) = store.budget_usage([BUDGET])
    assert (usage.committed_cents, usage.remaining_cents) == (10_000, 0)


def test_redemption_settles_and_maturity_releases(store):
    redeemed, unused = pending(customer="r1", cost_cents=1000), pending(customer="r2", cost_cents=1500)
    for p in (redeemed, unused):
        assert store.reserve(p, PRESSURE) is None
    assert store.add_outcome(redeemed.event_id, "o1", OutcomeType.CONVERTED, 80.0, T0 + dt.timedelta(days=1))
    assert store.add_outcome(redeemed.event_id, "o2", OutcomeType.REDEEMED, 0.0, T0 + dt.timedelta(days=1))
    assert store.add_outcome(redeemed.event_id, "o3", OutcomeType.REDEEMED, 0.0, T0 + dt.timedelta(days=1))
    (usage,) = store.budget_usage([BUDGET])
    assert (usage.paid_cents, usage.committed_cents) == (1000, 1500)
    matured = store.pop_matured(T0 + WINDOW)
    assert {p.event_id for p in matured} == {redeemed.event_id, unused.event_id}
    (usage,) = store.budget_usage([BUDGET])
    assert (usage.paid_cents, usage.committed_cents, usage.remaining_cents) == (1000, 0, 9000)
    got = next(p for p in matured if p.event_id == redeemed.event_id)
    assert sorted(got.outcomes, key=lambda o: o[0].value) == [
        (OutcomeType.CONVERTED, 80.0), (OutcomeType.REDEEMED, 0.0), (OutcomeType.REDEEMED, 0.0)]
    assert got.commitment == Commitment(BUDGET, 1000) and got.dsjson.rest == '"EventId":"x","c":{}'
    assert store.pending_count() == 0


def test_next_maturity_is_the_earliest_pending_window_close(store):
    assert store.next_maturity() is None
    late, early = pending("c1", when=T0 + dt.timedelta(hours=5)), pending("c2", when=T0 + dt.timedelta(hours=1))
    assert store.reserve(late, PRESSURE) is None and store.reserve(early, PRESSURE) is None
    assert store.next_maturity() == early.matures_at
    assert [p.event_id for p in store.pop_matured(early.matures_at)] == [early.event_id]
    assert store.next_maturity() == late.matures_at
    store.pop_matured(late.matures_at)
    assert store.next_maturity() is None


def test_outcome_join_duplicates_unknown_and_closed(store):
    p = pending()
    store.reserve(p, PRESSURE)
    assert store.add_outcome(p.event_id, "o", OutcomeType.OPENED, 0.0, T0 + dt.timedelta(hours=1))
    assert not store.add_outcome(p.event_id, "o", OutcomeType.OPENED, 0.0, T0 + dt.timedelta(hours=1))
    assert snap(store).customer.last_response == T0 + dt.timedelta(hours=1)
    with pytest.raises(UnknownEvent):
        store.add_outcome("never-issued", "o", OutcomeType.OPENED, 0.0, T0)
    assert store.pop_matured(T0 + WINDOW - dt.timedelta(seconds=1)) == []
    assert len(store.pop_matured(T0 + WINDOW)) == 1
    with pytest.raises(AttributionClosed):
        store.add_outcome(p.event_id, "late", OutcomeType.OPENED, 0.0, T0 + WINDOW)


def test_response_counts_per_channel_count_each_decision_once_and_a_refusal_not_at_all(store):
    email, sms = pending(customer="h"), pending(customer="h", channel="sms", when=T0 + dt.timedelta(days=2))
    for p in (email, sms):
        assert store.reserve(p, PRESSURE) is None
    # A refused contact (gap) is not counted as sent.
    assert store.reserve(pending(customer="h", when=T0 + dt.timedelta(days=2, hours=1)), PRESSURE)
    hour = dt.timedelta(hours=1)
    assert store.add_outcome(email.event_id, "o1", OutcomeType.OPENED, 0.0, T0 + hour)
    assert store.add_outcome(email.event_id, "o2", OutcomeType.OPENED, 0.0, T0 + 2 * hour)  # opened again
    assert store.add_outcome(email.event_id, "o3", OutcomeType.CLICKED, 0.0, T0 + 2 * hour)
    assert not store.add_outcome(email.event_id, "o3", OutcomeType.CLICKED, 0.0, T0 + 2 * hour)  # duplicate
    assert store.add_outcome(sms.event_id, "o4", OutcomeType.CONVERTED, 50.0, T0 + dt.timedelta(days=2, hours=2))
    state = snap(store, customer="h", when=T0 + dt.timedelta(days=2, hours=3)).customer
    assert state.counts == {"email:sent": 1, "email:opened": 1, "email:clicked": 1, "sms:sent": 1}
    # The SMS went out 3 hours ago: not yet settled, so it is neither opened nor ignored yet.
    assert state.history(T0 + dt.timedelta(days=2, hours=3)).responses == {"email": (1, 1, 1), "sms": (0, 0, 0)}
    later = T0 + dt.timedelta(days=5)
    assert snap(store, customer="h", when=later).customer.history(later).responses == {
        "email": (1, 1, 1), "sms": (1, 0, 0)}
    # The counts outlive the decisions' maturity.
    store.pop_matured(T0 + dt.timedelta(days=30))
    assert snap(store, customer="h", when=later).customer.counts["email:opened"] == 1


def test_concurrent_reservations_for_one_customer_pass_the_cap_once(store):
    """16 threads try to contact one customer at the same instant: exactly one wins (gap 24 h)."""
    results, barrier = [], threading.Barrier(16)

    def attempt():
        barrier.wait()
        results.append(store.reserve(pending(customer="hot"), PRESSURE))

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is None for r in results) == 1
    assert len(snap(store, customer="hot").customer.contacts) == 1


def test_concurrent_commitments_never_overspend(store):
    """40 threads commit 15 EUR each against 100 EUR: exactly 6 succeed."""
    results, barrier = [], threading.Barrier(40)

    def attempt(k):
        barrier.wait()
        results.append(store.reserve(pending(customer=f"k{k}", cost_cents=1500), PRESSURE))

    threads = [threading.Thread(target=attempt, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is None for r in results) == 6
    (usage,) = store.budget_usage([BUDGET])
    assert usage.committed_cents == 9000


def test_a_customers_log_token_is_made_once_and_read_by_the_snapshot(store):
    assert snap(store).log_token is None
    token = store.log_token("c1")
    assert token and store.log_token("c1") == token and snap(store).log_token == token
    assert store.log_token("c2") != token


def test_concurrent_first_uses_of_a_log_token_agree(store):
    tokens, start = [], threading.Barrier(8)

    def first_use():
        start.wait()
        tokens.append(store.log_token("new"))
    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(tokens)) == 1


def test_forget_deletes_a_customer_and_releases_its_pending_commitments(store):
    """Contacts, response counts, last response, log token and pending decisions go; their
    unsettled commitments are released; settled spend stays paid; others are untouched."""
    kept = pending("c1", cost_cents=1_000)
    redeemed = pending("c1", cost_cents=500, send_at=T0 + dt.timedelta(days=2))
    other = pending("c2", cost_cents=700)
    for p in (kept, redeemed, other, pending("c1", channel=None)):
        assert store.reserve(p, PRESSURE) is None
    store.add_outcome(kept.event_id, "o", OutcomeType.OPENED, 0.0, T0)
    store.add_outcome(redeemed.event_id, "r", OutcomeType.REDEEMED, 0.0, T0)
    store.log_token("c1")
    assert store.budget_usage([BUDGET])[0].committed_cents == 1_700
    gone = store.forget("c1")
    assert (gone.contacts, gone.pending, gone.released_cents, gone.had_state) == (2, 3, 1_000, True)
    usage = store.budget_usage([BUDGET])[0]
    assert (usage.paid_cents, usage.committed_cents) == (500, 700)
    s = snap(store, "c1", T0 + dt.timedelta(hours=1))
    assert s.customer.contacts == () and s.customer.counts == {} and s.customer.last_response is None
    assert s.log_token is None and store.pending_count() == 1
    with pytest.raises(UnknownEvent):
        store.add_outcome(kept.event_id, "o2", OutcomeType.CLICKED, 0.0, T0)
    assert [p.event_id for p in store.pop_matured(T0 + 2 * WINDOW)] == [other.event_id]
    assert store.forget("nobody") == type(gone)()


def test_the_sqlite_store_keeps_everything_across_a_reopening(tmp_path):
    """What the embedded default survives: the process ending (or being killed) between calls."""
    from engine.sqlite_store import SQLiteStateStore

    path = tmp_path / "state.sqlite3"
    first = SQLiteStateStore(path)
    p = pending("c1", cost_cents=1_000)
    assert first.reserve(p, PRESSURE) is None
    first.add_outcome(p.event_id, "o", OutcomeType.OPENED, 0.0, T0)
    token = first.log_token("c1")
    first.close()
    again = SQLiteStateStore(path)
    s = snap(again, when=T0 + dt.timedelta(hours=1))
    assert s.customer.contacts == ((T0, "email"),) and s.log_token == token
    assert s.budgets["promo"].committed_cents == 1_000 and s.customer.counts == {"email:sent": 1, "email:opened": 1}
    assert again.reserve(pending("c1", send_at=T0 + dt.timedelta(hours=2)), PRESSURE).startswith("min_gap")
    assert not again.add_outcome(p.event_id, "o", OutcomeType.OPENED, 0.0, T0)  # still a duplicate
    matured = again.pop_matured(T0 + WINDOW)
    assert [m.event_id for m in matured] == [p.event_id] and matured[0].outcomes == [(OutcomeType.OPENED, 0.0)]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again.close()


def test_a_second_process_on_the_sqlite_state_is_refused_and_changes_nothing(tmp_path):
    """The embedded store belongs to one process: a second one (a second server on the same
    --state-dir, an offline ``nba forget`` while the server runs) gets a clear error."""
    import subprocess
    import sys

    from engine.sqlite_store import SQLiteStateStore

    path = tmp_path / "state.sqlite3"
    first = SQLiteStateStore(path)
    assert first.reserve(pending("c1", cost_cents=1_000), PRESSURE) is None
    probe = ("import sys\nfrom engine.sqlite_store import SQLiteStateStore, StateInUse\n"
             "try:\n    SQLiteStateStore(sys.argv[1])\nexcept StateInUse as exc:\n    print(exc)\n    sys.exit(3)\n")
    run = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr
    assert "in use by another process" in run.stdout and str(path) in run.stdout
    assert snap(first).budgets["promo"].committed_cents == 1_000  # the owner carries on
    first.close()
    run = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr  # free again once closed


def test_a_pending_decision_packs_small_and_older_plain_zlib_still_reads():
    import zlib

    from engine.state import PendingDecision

    p = pending("c1", cost_cents=1_000)
    assert PendingDecision.unpack(p.pack()).to_json() == p.to_json()
    older = zlib.compress(p.to_json(), 1)
    assert PendingDecision.unpack(older).to_json() == p.to_json()
    assert len(p.pack()) < len(older)


def test_redis_reads_and_forgets_what_older_versions_stored(redis_server):
    """Pending decisions stored before the data moved out of the hash (field 'd', and the
    customer's set of pending ids) still mature and are still forgotten."""
    import zlib

    import redis as redis_py

    from engine.redis_store import RedisStateStore
    from engine.state import epoch

    store = RedisStateStore(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}")
    r = redis_py.Redis.from_url(redis_server.url)
    old = [pending("c1", when=T0, cost_cents=500), pending("c2", when=T0)]
    for n, p in enumerate(old):
        r.hset(store.pending_key(p.event_id), mapping={"d": zlib.compress(p.to_json(), 1), "c": p.customer_id,
                                                       "k": store._commitment_text(p), "n": n, "ch": "email"})
        r.zadd(store.queue_key, {p.event_id: epoch(p.matures_at)})
        r.sadd(store.legacy_pending_set_key(p.customer_id), p.event_id)
    r.hset(store.budget_key(BUDGET), "committed", 500)
    gone = store.forget("c1")
    assert gone.pending == 1 and gone.released_cents == 500 and snap(store).budgets["promo"].committed_cents == 0
    [matured] = store.pop_matured(T0 + WINDOW)
    assert matured.event_id == old[1].event_id and matured.to_json() == old[1].to_json()
    store.close()
