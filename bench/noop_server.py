"""The references of bench/serving.py: gRPC servers with `nba serve`'s options.

  * no-op (default): answers every call with one constant Decision of the same shape as a real
    one (made once, at start, by the engine), and does nothing else. What it costs is gRPC's
    and protobuf's share of a decision.
  * ``--floor``: does per request only what no decision service of this design can skip, each
    the way `nba serve` does it: the customer's features into VW's input, one VW prediction of
    the default catalog's feasible actions (their examples parsed once and kept), the argmax,
    one SQLite transaction that records the pending decision (WAL, synchronous=NORMAL, as the
    embedded store), one log line written, and the response (the constant Decision with the
    event id and value set). No validation, feasibility, caps, budgets, pseudonyms,
    exploration or learning. What it costs is a lower bound on `nba serve`'s CPU per decision.

    .venv/bin/python bench/noop_server.py [--port 0] [--max-calls 64] [--floor]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency import make_request  # noqa: E402
from engine import convert  # noqa: E402
from engine.catalog import load_catalog  # noqa: E402
from engine.feasibility import feasible_actions  # noqa: E402
from engine.features import customer_namespace  # noqa: E402
from engine.guards import ServerLimits  # noqa: E402
from engine.pipeline import DecisionEngine  # noqa: E402
from nba.v1 import decision_pb2 as pb  # noqa: E402
from nba.v1 import decision_pb2_grpc as pb_grpc  # noqa: E402


class NoopServicer(pb_grpc.DecisionServiceServicer):
    def __init__(self, decision: pb.Decision):
        self.decision = pb.NextBestActionResponse(decision=decision)

    def _decide(self, request) -> pb.Decision:
        return self.decision.decision

    def NextBestAction(self, request, context):
        return self.decision

    def NextBestActions(self, request_iterator, context):
        for position, request in enumerate(request_iterator):
            yield pb.NextBestActionsResponse(position=position, request_id=request.request_id,
                                             decision=self._decide(request))

    def ReportOutcome(self, request, context):
        return pb.ReportOutcomeResponse(event_id=request.event_id, outcome_id=request.outcome_id)


class FloorServicer(NoopServicer):
    """The floor (see the module): the default catalog's actions for a request of bench's kind."""

    def __init__(self, decision: pb.Decision, engine: DecisionEngine, directory: Path):
        super().__init__(decision)
        self.model = engine.model
        request = make_request(0)
        actions = feasible_actions(request, engine.catalog, engine.now()).actions
        self.multi, self.n = ",".join(engine.features.fragment(a) for a in actions), len(actions)
        self.db = sqlite3.connect(directory / "state.sqlite3", isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE pending (event TEXT PRIMARY KEY, customer TEXT NOT NULL, data TEXT NOT NULL)")
        self.log = os.open(directory / "decisions.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def NextBestAction(self, request, context):
        return pb.NextBestActionResponse(decision=self._decide(request))

    def _decide(self, request) -> pb.Decision:
        head = '{"U":' + json.dumps(customer_namespace(convert.request_from_proto(request)),
                                    separators=(",", ":")) + ',"_multi":['
        values = self.model.values_parts(head, self.multi, self.n)
        chosen = int(values.argmax())
        event_id = uuid.uuid4().hex
        line = f'{{"EventId":"{event_id}","a":[{chosen + 1}],"c":{head}{self.multi}]}}}}'
        with self.db:
            self.db.execute("INSERT INTO pending VALUES (?, ?, ?)", (event_id, request.customer_id, line))
        os.write(self.log, (line + "\n").encode())
        decision = pb.Decision()
        decision.CopyFrom(self.decision.decision)
        decision.event_id, decision.expected_value = event_id, float(values[chosen])
        return decision


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-calls", type=int, default=64)
    parser.add_argument("--floor", action="store_true", help="the floor server (see the module) instead of the no-op")
    args = parser.parse_args()
    engine = DecisionEngine(load_catalog(), seed=1)
    decision = convert.decision_to_proto(engine.decide(make_request(1)), engine.catalog.currency)
    limits = ServerLimits(max_calls=args.max_calls)
    options = [("grpc.max_receive_message_length", 4 * 2**20), ("grpc.max_send_message_length", 4 * 2**20),
               ("grpc.so_reuseport", 0), *limits.grpc_options()]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=limits.max_calls), options=options,
                         maximum_concurrent_rpcs=limits.max_calls)
    with tempfile.TemporaryDirectory(prefix="nba-floor-") as tmp:
        servicer = FloorServicer(decision, engine, Path(tmp)) if args.floor else NoopServicer(decision)
        pb_grpc.add_DecisionServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
        server.start()
        print(f"{'floor' if args.floor else 'no-op'}: serving nba.v1.DecisionService on 127.0.0.1:{port}", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            time.sleep(0.1)
        server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
