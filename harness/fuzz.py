"""A seeded fuzzer of the gRPC service: malformed and random calls to every RPC, through a real
server, counted by status code (``tests/test_fuzz.py``, ``bench/fuzz.py``).

Each call is one of: a DecisionRequest with random, hostile or valid fields (unary, or a short
stream of them); an Outcome naming a real or made-up event, with random types and values; raw
bytes that are not a message; GetPolicy, ReloadPolicy, ForgetCustomer. What a server must do
with all of it: answer OK or a documented status (never INTERNAL or UNKNOWN), log only the
decisions and outcomes it accepted, stay healthy and keep its memory bounded.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from nba.v1 import decision_pb2 as pb
from nba.v1 import decision_pb2_grpc as pb_grpc

SERVICE = "/nba.v1.DecisionService/"
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.timezone.utc)
WORDS = ["email", "sms", "push", "web", "fax", "", "EMAIL", "discount_10", "new_collection", "birthday_gift",
         "discount_99", "Europe/Paris", "Mars/Olympus", "UTC", "_label_cost", "_text", "_multi", "segment",
         "basket", "a b", "é", "日本", "\u0000", "x" * 200, "x" * 5000, "'; DROP TABLE pending; --", "a}{b", "%7D"]
HOSTILE_NUMBERS = [float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 0.0, -0.0, 5e-324, 1.0, 64.0]


@dataclass
class FuzzReport:
    codes: Counter = field(default_factory=Counter)     # status name -> calls
    by_kind: Counter = field(default_factory=Counter)   # "kind:status" -> calls
    decisions_ok: int = 0                               # decisions the clients received
    outcomes_ok: int = 0                                # fresh outcomes acknowledged
    event_ids: list[str] = field(default_factory=list)

    def record(self, kind: str, code: grpc.StatusCode) -> None:
        self.codes[code.name] += 1
        self.by_kind[f"{kind}:{code.name}"] += 1


class Fuzzer:
    def __init__(self, target: str, seed: int = 1, metadata=None):
        self.rng = np.random.default_rng(seed)
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 * 2**20)])
        self.stub = pb_grpc.DecisionServiceStub(self.channel)
        self.raw = {m: self.channel.unary_unary(SERVICE + m, request_serializer=lambda b: b,
                                                response_deserializer=lambda b: b)
                    for m in ("NextBestAction", "ReportOutcome", "GetPolicy", "ForgetCustomer")}
        self.metadata = metadata
        self.report = FuzzReport()

    def close(self) -> None:
        self.channel.close()

    # -- random parts -------------------------------------------------------------------------

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _text(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return self._pick(WORDS)
        if r < 0.8:
            return f"c-{int(self.rng.integers(50))}"
        n = int(self.rng.integers(0, 40))
        return "".join(chr(int(c)) for c in self.rng.integers(1, 0x2FFF, n))

    def _number(self) -> float:
        return self._pick(HOSTILE_NUMBERS) if self.rng.random() < 0.5 else float(self.rng.normal(50, 100))

    def _time(self) -> Timestamp | None:
        r = self.rng.random()
        if r < 0.3:
            return None
        stamp = Timestamp()
        if r < 0.85:
            stamp.FromDatetime(T0 + dt.timedelta(hours=float(self.rng.uniform(-48, 400))))
        else:  # out of any calendar
            stamp.seconds = int(self._pick([-2**62, 2**62, 253402300800, -62135596801]))
            stamp.nanos = int(self._pick([0, 999_999_999, -1, 2_000_000_000]))
        return stamp

    def decision_request(self, kind=pb.NextBestActionRequest):
        m = kind(customer_id=self._text() if self.rng.random() < 0.7 else f"c-{int(self.rng.integers(50))}")
        for _ in range(int(self.rng.integers(0, 4))):
            m.numeric_features[self._text()] = self._number()
        for _ in range(int(self.rng.integers(0, 4))):
            m.categorical_features[self._text()] = self._text()
        for repeated in (m.consented_channels, m.candidate_offers, m.allowed_channels):
            repeated.extend(self._text() for _ in range(int(self.rng.integers(0, 3))))
        if self.rng.random() < 0.6:
            m.timezone = self._pick(["Europe/Paris", "UTC", "", "Mars/Olympus", "America/Martinique"])
        stamp = self._time()
        if stamp is not None:
            m.decision_time.CopyFrom(stamp)
        m.inbound = bool(self.rng.random() < 0.2)
        if self.rng.random() < 0.3:  # a plausible request, so that decisions are made too
            m = kind(customer_id=f"c-{int(self.rng.integers(50))}", consented_channels=["email", "sms"],
                     timezone="Europe/Paris", numeric_features={"basket": 60.0},
                     categorical_features={"segment": "loyal"}, decision_time=self._time())
        return m

    def outcome(self) -> pb.ReportOutcomeRequest:
        known = self.report.event_ids
        event = self._pick(known) if known and self.rng.random() < 0.6 else self._text()
        m = pb.ReportOutcomeRequest(event_id=event, outcome_id=self._text(), value=self._number(),
                       type=int(self._pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 99, -1])))
        stamp = self._time()
        if stamp is not None:
            m.time.CopyFrom(stamp)
        return m

    def junk(self) -> bytes:
        n = int(self._pick([0, 1, 5, 64, 4096]))
        return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    # -- calls --------------------------------------------------------------------------------

    def call(self, kind: str, fn, *args, **kwargs):
        try:
            reply = fn(*args, timeout=10, metadata=self.metadata, **kwargs)
            self.report.record(kind, grpc.StatusCode.OK)
            return reply
        except grpc.RpcError as err:
            self.report.record(kind, err.code())
            return None

    def one(self) -> None:
        r = self.rng.random()
        if r < 0.45:
            reply = self.call("decide", self.stub.NextBestAction, self.decision_request())
            if reply is not None:
                self.report.decisions_ok += 1
                self.report.event_ids.append(reply.decision.event_id)
        elif r < 0.55:
            self._stream()
        elif r < 0.80:
            ack = self.call("outcome", self.stub.ReportOutcome, self.outcome())
            if ack is not None and not ack.duplicate:
                self.report.outcomes_ok += 1
        elif r < 0.93:
            method = self._pick(list(self.raw))
            self.call(f"bytes:{method}", self.raw[method], self.junk())
        elif r < 0.96:
            self.call("policy", self.stub.GetPolicy, pb.GetPolicyRequest())
        elif r < 0.98:
            self.call("reload", self.stub.ReloadPolicy, pb.ReloadPolicyRequest())
        else:
            self.call("forget", self.stub.ForgetCustomer, pb.ForgetCustomerRequest(customer_id=self._text()))

    def _stream(self) -> None:
        requests = [self.decision_request(pb.NextBestActionsRequest) for _ in range(int(self.rng.integers(1, 6)))]
        received = []
        try:
            for answer in self.stub.NextBestActions(iter(requests), timeout=10, metadata=self.metadata):
                if answer.HasField("decision"):
                    received.append(answer.decision)
            self.report.record("stream", grpc.StatusCode.OK)
        except grpc.RpcError as err:
            self.report.record("stream", err.code())
        self.report.decisions_ok += len(received)
        self.report.event_ids += [d.event_id for d in received]

    def run(self, calls: int) -> FuzzReport:
        for _ in range(calls):
            self.one()
        return self.report
