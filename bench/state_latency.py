"""What the shared state costs: engine.decide() with the in-memory store versus Redis.

Runs the engine in process (no gRPC, so the difference is the store alone) on the default
catalog -- caps, the budget and pacing on -- against the embedded store and against a
redis-server of its own on a loopback port (append-only file, fsync every second); reports
p50/p99 per decision and the Redis round trips per decision (counted by the store) and per
outcome.

    .venv/bin/python bench/state_latency.py [--decisions 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency import make_request  # noqa: E402
from engine.catalog import load_catalog  # noqa: E402
from engine.domain import Outcome, OutcomeType  # noqa: E402
from engine.pipeline import DecisionEngine  # noqa: E402
from harness.redis_servers import RedisServer  # noqa: E402
from engine.redis_store import RedisStateStore  # noqa: E402


def measure(engine: DecisionEngine, n: int, warmup: int = 300) -> dict:

    requests = [make_request(i % 2000) for i in range(n + warmup)]
    for r in requests[:warmup]:
        engine.decide(r)
    store = engine.store
    trips0 = getattr(store, "round_trips", 0)
    ms, events = [], []
    for r in requests[warmup:]:
        start = time.perf_counter()
        d = engine.decide(r)
        ms.append((time.perf_counter() - start) * 1000)
        events.append(d.event_id)
    trips1 = getattr(store, "round_trips", 0)
    out_ms = []
    for k, event in enumerate(events[:2000]):
        start = time.perf_counter()
        engine.report_outcome(Outcome(event, f"o{k}", OutcomeType.OPENED, 0.0))
        out_ms.append((time.perf_counter() - start) * 1000)
    trips2 = getattr(store, "round_trips", 0)
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": n,
            "round_trips_per_decision": (trips1 - trips0) / n,
            "outcome_p50_ms": float(np.percentile(out_ms, 50)),
            "round_trips_per_outcome": (trips2 - trips1) / len(out_ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    catalog = load_catalog()
    # Wall clock, as in production: decisions mature in the server's background thread, so a
    # decision's own round trips are the snapshot and the reservation.
    memory = measure(DecisionEngine(catalog, seed=1), args.decisions)
    with RedisServer() as server:
        store = RedisStateStore(server.url, prefix="bench")
        on_redis = measure(DecisionEngine(catalog, store=store, seed=1), args.decisions)
        store.close()
    for name, m in (("in memory", memory), ("redis", on_redis)):
        print(f"decide() {name:9}: p50 {m['p50_ms']:.3f} ms  p99 {m['p99_ms']:.3f} ms  "
              f"({m['n']} decisions; {m['round_trips_per_decision']:.2f} Redis round trips each; "
              f"outcome p50 {m['outcome_p50_ms']:.3f} ms, {m['round_trips_per_outcome']:.2f} round trips)")
    print(f"added by Redis: p50 +{on_redis['p50_ms'] - memory['p50_ms']:.3f} ms, "
          f"p99 +{on_redis['p99_ms'] - memory['p99_ms']:.3f} ms per decision")
    if args.json:
        args.json.write_text(json.dumps({"memory": memory, "redis": on_redis}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
