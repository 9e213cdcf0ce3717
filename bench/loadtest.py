"""Load test: 4 `nba serve` processes on one Redis (or a 3-node Redis Cluster), verified by
replaying their decision logs; optionally with Redis killed and restarted mid-load.

Starts its own redis-server(s) on free loopback ports and its own servers; bounded in requests;
stops everything at the end.

    .venv/bin/python bench/loadtest.py                      # one Redis
    .venv/bin/python bench/loadtest.py --cluster            # 3-node Redis Cluster
    .venv/bin/python bench/loadtest.py --outage             # kill Redis mid-load, restart it
    options: --servers 4 --clients 8 --requests 20000 --customers 500 --budget 1500 --json F
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.load import run_load  # noqa: E402
from harness.redis_servers import RedisCluster, RedisServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", action="store_true", help="a 3-node Redis Cluster")
    parser.add_argument("--outage", action="store_true", help="kill Redis mid-load and restart it")
    parser.add_argument("--down-seconds", type=float, default=1.5)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--budget", type=float, default=1_500.0, help="EUR for the period")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.cluster and args.outage:
        parser.error("--outage kills a single Redis server; use it without --cluster")

    redis = RedisCluster() if args.cluster else RedisServer()
    with redis, tempfile.TemporaryDirectory(prefix="nba-load-") as work, \
            tqdm(total=args.requests, unit="req", desc="load") as bar:
        result = run_load(redis.url, cluster=args.cluster, workdir=Path(work), servers=args.servers,
                          clients=args.clients, requests=args.requests, customers=args.customers,
                          budget=args.budget, outage=redis if args.outage else None,
                          down_seconds=args.down_seconds, progress=bar.update)
    where = "3-node Redis Cluster" if args.cluster else "one Redis"
    print(f"\n{args.servers} servers on {where}, {args.clients} clients, {result['calls']:,} calls "
          f"in {result['seconds']:.1f} s = {result['requests_per_second']:.0f} req/s; "
          f"latency p50 {result['latency_p50_ms']:.2f} ms, p99 {result['latency_p99_ms']:.2f} ms")
    print(f"errors: {result['errors'] or 'none'}; fallback (safe-mode) decisions: {result['fallback_decisions']}")
    print(f"replayed logs: {result['decisions_logged']:,} decisions, {result['contacts_logged']:,} contacts "
          f"to {result['customers_contacted']:,} customers; cap violations {result['cap_violations']}, "
          f"gap violations {result['gap_violations']}; decisions with a PRESSURE exclusion "
          f"{result['decisions_with_pressure_exclusion']:,}, with a BUDGET exclusion "
          f"{result['decisions_with_budget_exclusion']:,}")
    for name, b in result["budgets"].items():
        ledger = result["redis_ledger"].get(name, {})
        print(f"budget {name}: issued {b['committed_cents'] / 100:,.2f} of {b['amount_cents'] / 100:,.2f} EUR, "
              f"of which redeemed {b['paid_cents'] / 100:,.2f} (Redis ledger: paid "
              f"{ledger.get('paid_cents', 0) / 100:,.2f} + committed {ledger.get('committed_cents', 0) / 100:,.2f}); "
              f"overspent: {b['overspent']}")
    print(f"redemptions reported: {result['redeemed_reported']:,} (retries while Redis was down: "
          f"{result['outcome_retries']})")
    if "recovery_seconds" in result:
        rec = result["recovery_seconds"]
        print(f"outage: Redis down {result['outage_seconds']:.2f} s; normal decisions again "
              f"{'never' if rec is None else f'{rec:.2f} s'} after restart")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    failed = (result["errors"] or result["cap_violations"] or result["gap_violations"]
              or not result["ledger_consistent"] or any(b["overspent"] for b in result["budgets"].values())
              or ("recovery_seconds" in result and (result["recovery_seconds"] is None
                                                    or result["recovery_seconds"] > 2.0)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
