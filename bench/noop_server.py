"""The reference of bench/serving.py: a gRPC server with `nba serve`'s options that answers every
call with one constant Decision of the same shape as a real one (made once, at start, by the
engine), and does nothing else. What it costs is gRPC's and protobuf's share of a decision.

    .venv/bin/python bench/noop_server.py [--port 0] [--max-calls 64]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency import make_request  # noqa: E402
from engine import convert  # noqa: E402
from engine.catalog import load_catalog  # noqa: E402
from engine.guards import ServerLimits  # noqa: E402
from engine.pipeline import DecisionEngine  # noqa: E402
from nba.v1 import decision_pb2 as pb  # noqa: E402
from nba.v1 import decision_pb2_grpc as pb_grpc  # noqa: E402


class NoopServicer(pb_grpc.DecisionServiceServicer):
    def __init__(self, decision: pb.Decision):
        self.decision = pb.NextBestActionResponse(decision=decision)

    def NextBestAction(self, request, context):
        return self.decision

    def NextBestActions(self, request_iterator, context):
        for position, request in enumerate(request_iterator):
            yield pb.NextBestActionsResponse(position=position, request_id=request.request_id,
                                             decision=self.decision.decision)

    def ReportOutcome(self, request, context):
        return pb.ReportOutcomeResponse(event_id=request.event_id, outcome_id=request.outcome_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-calls", type=int, default=64)
    args = parser.parse_args()
    engine = DecisionEngine(load_catalog(), seed=1)
    decision = convert.decision_to_proto(engine.decide(make_request(1)), engine.catalog.currency)
    limits = ServerLimits(max_calls=args.max_calls)
    options = [("grpc.max_receive_message_length", 4 * 2**20), ("grpc.max_send_message_length", 4 * 2**20),
               ("grpc.so_reuseport", 0), *limits.grpc_options()]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=limits.max_calls), options=options,
                         maximum_concurrent_rpcs=limits.max_calls)
    pb_grpc.add_DecisionServiceServicer_to_server(NoopServicer(decision), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"no-op: serving nba.v1.DecisionService on 127.0.0.1:{port}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.1)
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
