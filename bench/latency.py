"""Latency and throughput of a running `nba serve` (loopback, default catalog).

Starts its own server process on a free port (wall clock, like production), then measures
  * NextBestAction latency seen by one client (p50, p90, p99, max), after a warm-up;
  * NextBestActions decisions per second over one stream;
  * ReportOutcome latency.
Bounded in count and time; stops its server when done.

    .venv/bin/python bench/latency.py [--requests 5000] [--stream 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.client import NBAClient  # noqa: E402
from engine.server import start_server_process  # noqa: E402
from engine.domain import DecisionRequest  # noqa: E402

SEGMENTS = ["new", "loyal", "occasional", "dormant"]


def make_request(i: int) -> DecisionRequest:
    return DecisionRequest(
        customer_id=f"bench-{i}",
        numeric_features={"basket": 40.0 + i % 65, "days_since_purchase": float(i % 90),
                          "opens_30d": float(i % 5)},
        categorical_features={"segment": SEGMENTS[i % 4], "motivation": "promo" if i % 2 else "novelty"},
        consented_channels=("email", "sms", "push") if i % 3 == 0 else ("email",),
        timezone="Europe/Paris",
    )


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()), "n": len(a)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="unary calls measured")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--stream", type=int, default=20000, help="requests in the stream")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nba-bench-") as log_dir:
        proc, port = start_server_process(Path(log_dir), seed=1)
        try:
            with NBAClient(f"127.0.0.1:{port}", timeout=10) as nba:
                nba.wait_ready()
                for i in range(args.warmup):
                    nba.decide(make_request(i))
                requests = [make_request(i) for i in range(args.requests)]
                latencies, events, feasible = [], [], []
                for r in requests:
                    start = time.perf_counter()
                    d = nba.decide(r)
                    latencies.append((time.perf_counter() - start) * 1000)
                    events.append(d.event_id)
                    feasible.append(d.feasible_actions)
                unary = percentiles(latencies)
                unary["mean_feasible_actions"] = float(np.mean(feasible))

                outcome_ms = []
                for n, event_id in enumerate(events[:2000]):
                    start = time.perf_counter()
                    nba.report_outcome(event_id, f"o{n}", "OPENED")
                    outcome_ms.append((time.perf_counter() - start) * 1000)
                outcomes = percentiles(outcome_ms)

                stream_requests = [make_request(i) for i in range(args.stream)]
                start = time.perf_counter()
                count = sum(1 for _ in nba.decide_many(stream_requests, timeout=600))
                elapsed = time.perf_counter() - start
                stream = {"decisions": count, "seconds": elapsed, "decisions_per_second": count / elapsed}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    result = {"next_best_action": unary, "report_outcome": outcomes, "next_best_actions_stream": stream}
    print(f"NextBestAction   (1 client, {unary['n']} calls, ~{unary['mean_feasible_actions']:.0f} "
          f"feasible actions): p50 {unary['p50_ms']:.2f} ms  p90 {unary['p90_ms']:.2f} ms  "
          f"p99 {unary['p99_ms']:.2f} ms  max {unary['max_ms']:.1f} ms")
    print(f"ReportOutcome    ({outcomes['n']} calls): p50 {outcomes['p50_ms']:.2f} ms  "
          f"p99 {outcomes['p99_ms']:.2f} ms")
    print(f"NextBestActions  (1 stream, {stream['decisions']} requests): "
          f"{stream['decisions_per_second']:.0f} decisions/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
