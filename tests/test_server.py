"""Integration: a real gRPC server on a free loopback port."""

import datetime as dt
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine import convert
from engine.client import Failure, NBAClient, RequestFailed, failure_of
from engine.decision_log import log_files
from engine.server import start_server_process
from engine.pipeline import DecisionEngine
from engine.server import start_server
from nba.v1 import decision_pb2 as pb
from nba.v1 import decision_pb2_grpc as pb_grpc
from support import T0, request


@pytest.fixture
def client(server):
    with NBAClient(f"127.0.0.1:{server.port}") as c:
        c.wait_ready(10)
        yield c


def test_health_is_serving(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "nba.v1.DecisionService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_decide_report_and_policy(client, server):
    d = client.decide(request())
    assert d.event_id and 0 < d.probability <= 1 and d.customer_id == "c-1"
    assert d.model_version == "cold-start" and d.feasible_actions > 1
    assert d.decision_time == T0
    assert {e.reason.value for e in d.exclusions} >= {"ELIGIBILITY", "INBOUND_ONLY"}
    ack = client.report_outcome(d.event_id, "open-1", "OPENED", time=T0 + dt.timedelta(hours=1))
    assert ack.duplicate is False
    assert client.report_outcome(d.event_id, "open-1", "OPENED", time=T0 + dt.timedelta(hours=1)).duplicate
    info = client.policy()
    assert info.counters.decisions == 1 and info.counters.outcomes == 1
    assert info.counters.duplicate_outcomes == 1 and info.counters.pending == 1
    assert info.exploration.algorithm == pb.EXPLORATION_ALGORITHM_EPSILON_GREEDY
    assert info.attribution_window_seconds == 7 * 86400 and info.currency_code == "EUR"
    assert "--cb_adf" in info.model_args
    assert {c.id: (list(c.channels), c.max_contacts) for c in info.caps} == {
        "email_week": (["email"], 2), "sms_week": (["sms"], 1), "all_week": (["email", "sms", "push"], 3)}
    assert info.min_gap_seconds == 86400
    (budget,) = info.budgets
    assert budget.id == "incentives" and budget.available and budget.amount == 20000.0
    assert budget.paid + budget.committed + budget.remaining == pytest.approx(budget.amount)
    assert budget.shadow_price >= 0 and "discount_10" in budget.offers


def test_status_codes_for_caller_mistakes(client):
    with pytest.raises(grpc.RpcError) as err:
        client.report_outcome("no-such-event", "o", "OPENED")
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    failure = failure_of(err.value)
    assert failure.reason == "ERROR_REASON_EVENT_NOT_FOUND" and failure.metadata == {"event_id": "no-such-event"}
    d = client.decide(request())
    with pytest.raises(grpc.RpcError) as err:
        client.report_outcome(d.event_id, "o", "CONVERTED", value=-1.0, time=T0)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "value" in err.value.details()
    assert failure_of(err.value).violations == (("value", "must be >= 0, got -1.0"),)
    # An outcome type the contract does not define (raw enum number).
    stub = pb_grpc.DecisionServiceStub(client._channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ReportOutcome(pb.ReportOutcomeRequest(event_id=d.event_id, outcome_id="x", type=42), timeout=5)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "type" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.ReportOutcome(pb.ReportOutcomeRequest(event_id=d.event_id, outcome_id="x"), timeout=5)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert failure_of(err.value).violations[0][0] == "type"
    # Money in another currency is refused, not converted.
    with pytest.raises(grpc.RpcError) as err:
        stub.ReportOutcome(pb.ReportOutcomeRequest(event_id=d.event_id, outcome_id="x", value=5.0,
                                                   type=pb.OUTCOME_TYPE_CONVERTED, currency_code="USD"), timeout=5)
    assert failure_of(err.value).violations[0][0] == "currency_code" and "EUR" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.decide(request(timezone="Not/AZone"))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("timezone:")
    failure = failure_of(err.value)
    assert failure.reason == "ERROR_REASON_INVALID_FIELD" and failure.violations[0][0] == "timezone"
    assert client.policy().counters.outcomes == 0


def test_attribution_closed_is_failed_precondition(client):
    d = client.decide(request())
    late = T0 + dt.timedelta(days=8)
    client.decide(request("other", late))  # moves the server clock past the window
    with pytest.raises(grpc.RpcError) as err:
        client.report_outcome(d.event_id, "late", "OPENED", time=late)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_stream_returns_decisions_in_order(client):
    requests = [request(f"cust-{i}", T0 + dt.timedelta(seconds=i)) for i in range(60)]
    decisions = list(client.decide_many(requests, timeout=60))
    assert [d.customer_id for d in decisions] == [r.customer_id for r in requests]
    assert len({d.event_id for d in decisions}) == 60


def test_stream_answers_a_bad_request_with_its_error_and_goes_on(client, server):
    requests = [request(f"cust-{i}") for i in range(3)] + [request("")] + [request("after")]
    answers = list(client.stream([(f"r{i}", r) for i, r in enumerate(requests)], timeout=30))
    assert [(a.position, a.request_id) for a in answers] == [(i, f"r{i}") for i in range(5)]
    assert [a.decision.customer_id for a in answers if a.decision] == ["cust-0", "cust-1", "cust-2", "after"]
    bad = answers[3]
    assert bad.decision is None and bad.failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert bad.failure.message == "customer_id: must not be empty"
    assert bad.failure.violations == (("customer_id", "must not be empty"),)
    assert bad.failure.reason == "ERROR_REASON_INVALID_FIELD"
    counters = server.engine.policy().counters
    assert counters["decisions"] == 4 and counters["rejected"] == 1
    # decide_many raises at the first failed request, naming its position.
    with pytest.raises(RequestFailed, match="request #3: INVALID_ARGUMENT: customer_id"):
        list(client.decide_many(requests, timeout=30))


def test_stream_answers_undecodable_bytes_and_an_overlong_request_id_and_goes_on(client):
    call = client._channel.stream_stream("/nba.v1.DecisionService/NextBestActions",
                                         request_serializer=lambda b: b,
                                         response_deserializer=pb.NextBestActionsResponse.FromString)
    good = convert.request_to_proto(request("ok"), pb.NextBestActionsRequest)
    long_id = pb.NextBestActionsRequest()
    long_id.CopyFrom(good)
    long_id.request_id = "x" * 129
    answers = list(call(iter([good.SerializeToString(), b"\xff\xff\xff", long_id.SerializeToString(),
                              good.SerializeToString()]), timeout=30))
    assert [a.WhichOneof("result") for a in answers] == ["decision", "error", "error", "decision"]
    assert [a.position for a in answers] == [0, 1, 2, 3]
    undecodable, overlong = (Failure.from_status(a.error) for a in answers[1:3])
    assert undecodable.reason == "ERROR_REASON_UNDECODABLE" and "not a valid nba.v1.NextBestActionsRequest" \
        in undecodable.message
    assert overlong.violations[0][0] == "request_id" and answers[2].request_id == "x" * 128


class _Delay(grpc.ServerInterceptor):
    """Holds each call before its handler runs: the call reaches the servicer late."""

    def __init__(self, seconds):
        self.seconds = seconds

    def intercept_service(self, continuation, handler_call_details):
        time.sleep(self.seconds)
        return continuation(handler_call_details)


def test_expired_deadline_is_deadline_exceeded_and_decides_nothing(catalog):
    # The call reaches the servicer after its deadline (held 0.3 s, deadline 0.05 s): the client
    # sees DEADLINE_EXCEEDED and the server decides and logs nothing for it.
    engine = DecisionEngine(catalog, honour_request_time=True)
    running = start_server(engine, port=0, interceptors=[_Delay(0.3)])
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            c.wait_ready(10)
            stub = pb_grpc.DecisionServiceStub(c._channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.NextBestAction(convert.request_to_proto(request()), timeout=0.05)
            assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            time.sleep(0.6)  # the held call has reached the servicer by now
            assert engine.policy().counters["decisions"] == 0
            # Given time, the same request is decided.
            assert stub.NextBestAction(convert.request_to_proto(request()), timeout=10).decision.customer_id
            assert engine.policy().counters["decisions"] == 1
    finally:
        running.stop(1)


def test_message_size_limit(catalog, tmp_path):
    engine = DecisionEngine(catalog, honour_request_time=True)
    running = start_server(engine, port=0, max_message_bytes=16 * 1024)
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            big = request(categorical_features={f"f{i}": "v" * 100 for i in range(200)})
            with pytest.raises(grpc.RpcError) as err:
                c.decide(big)
            assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert engine.policy().counters["decisions"] == 0
    finally:
        running.stop(1)


def test_sigterm_lets_in_flight_calls_finish(tmp_path):
    """`nba serve` stops on SIGTERM only after the streaming call in progress completes."""
    proc, port = start_server_process(tmp_path, seed=1, extra=["--honour-decision-time"])
    try:
        with NBAClient(f"127.0.0.1:{port}") as c:
            c.wait_ready(20)
            requests = [request(f"c{i}", T0 + dt.timedelta(seconds=i)) for i in range(400)]
            received = []
            started = threading.Event()

            def consume():
                for d in c.decide_many(requests, timeout=60):
                    received.append(d)
                    started.set()

            worker = threading.Thread(target=consume)
            worker.start()
            assert started.wait(20)
            proc.send_signal(signal.SIGTERM)
            worker.join(60)
            assert len(received) == 400
            # After shutdown, new calls are refused, not half-served.
            assert proc.wait(timeout=30) == 0
            with pytest.raises(grpc.RpcError) as err:
                c.decide(request("too-late"))
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        if proc.poll() is None:
            proc.kill()
    logged = sum(len(f.read_text().splitlines()) for f in log_files(tmp_path, "decisions"))
    assert logged == 400


@pytest.mark.slow
def test_wall_clock_server_learns_without_further_calls(tmp_path):
    """On the wall clock, attribution windows close with time; the server learns by itself."""
    from engine.catalog import default_catalog_path, load_catalog

    path = tmp_path / "fast.toml"
    path.write_text(default_catalog_path().read_text() + "\n[attribution]\nwindow_hours = 0.001\n")
    engine = DecisionEngine(load_catalog(path), log_dir=tmp_path / "logs", seed=1)
    running = start_server(engine, port=0, mature_every=0.2)
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            d = c.next_best_action("c-1", consented_channels=["email"])
            c.report_outcome(d.event_id, "buy", "CONVERTED", 50.0)
            for _ in range(100):  # the window is 3.6 s
                if c.policy().counters.learned == 1:
                    break
                threading.Event().wait(0.1)
            info = c.policy()
            assert info.counters.learned == 1 and info.counters.pending == 0
            assert engine.model.updates == 1
    finally:
        running.stop(1)
