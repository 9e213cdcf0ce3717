"""Load and fault tests: several `nba serve` processes on one Redis and on a 3-node cluster,
and Redis killed mid-load. Real processes on loopback, bounded in requests; slow (about a
minute each), so `make test-fast` skips them and `make test` (CI) runs them."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from engine.catalog import load_catalog
from harness.load import load_test_catalog, run_load, verify_logs

pytestmark = pytest.mark.slow


def check(result: dict) -> None:
    assert result["errors"] == {}
    assert result["calls"] == result["requests"]
    assert result["cap_violations"] == 0 and result["gap_violations"] == 0
    # The caps and the budget really bound: many decisions saw both exclusions.
    assert result["decisions_with_pressure_exclusion"] > result["requests"] // 4
    assert result["decisions_with_budget_exclusion"] > result["requests"] // 4
    (budget,) = result["budgets"].values()
    assert not budget["overspent"]
    assert budget["committed_cents"] > budget["amount_cents"] - 1500  # it ran out
    assert result["ledger_consistent"]
    assert budget["paid_cents"] > 0  # redemptions were settled


def test_four_servers_on_one_redis(redis_server, tmp_path):
    result = run_load(redis_server.url, workdir=tmp_path, requests=20_000, seed=11)
    check(result)
    assert result["fallback_decisions"] == 0


def test_four_servers_on_a_redis_cluster(redis_cluster, tmp_path):
    result = run_load(redis_cluster.url, cluster=True, workdir=tmp_path, requests=20_000, seed=12)
    check(result)
    assert result["fallback_decisions"] == 0


def test_redis_killed_mid_load_and_restarted(tmp_path):
    from harness.redis_servers import RedisServer

    with RedisServer() as server:
        result = run_load(server.url, workdir=tmp_path, requests=8_000, seed=13, outage=server,
                          down_seconds=1.5)
    check(result)
    assert result["fallback_decisions"] > 0          # safe mode did happen ...
    assert result["recovery_seconds"] is not None and result["recovery_seconds"] <= 2.0
    assert result["fallback_after_recovery"] == 0    # ... and stopped once Redis was back


def test_the_replay_catches_a_cap_violation_and_an_overspend(tmp_path):
    """The verifier is not a check that cannot fail: planted violations are found."""
    catalog = load_catalog(load_test_catalog(tmp_path, budget=20.0))
    t0 = dt.datetime(2026, 3, 2, 8, tzinfo=dt.timezone.utc)
    lines = []
    for k, hours in enumerate([0, 30, 60, 90]):  # 4 emails in 4 days: gap fine, caps broken
        at = (t0 + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines.append({"EventId": f"e{k}", "_nba": {
            "customer_id": "c1", "offer_cost": 10.0, "budget": "incentives:2", "decision_time": at,
            "action": {"no_contact": False, "channel": "email", "send_at": at, "offer_id": "discount_10"}}})
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "decisions-x-1-0001.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    report = verify_logs([tmp_path / "logs"], catalog)
    assert report["gap_violations"] == 0
    assert report["cap_violations"] >= 2  # email_week (2) and all_week (3)
    assert report["budgets"]["incentives:2"]["overspent"]
    # With commitments released as windows close: 40 EUR committed within one week is too much,
    # four 10 EUR offers a week apart is not.
    assert verify_logs([tmp_path / "logs"], catalog, released=True)["budgets"]["incentives:2"]["overspent"]
    spread = [dict(line, _nba=dict(line["_nba"], decision_time=(t0 + dt.timedelta(days=8 * k)).isoformat()))
              for k, line in enumerate(lines)]
    (tmp_path / "logs" / "decisions-x-1-0001.jsonl").write_text("\n".join(json.dumps(x) for x in spread))
    assert not verify_logs([tmp_path / "logs"], catalog, released=True)["budgets"]["incentives:2"]["overspent"]
