"""A small Python client for channel systems.

    with NBAClient("127.0.0.1:50051") as nba:
        nba.wait_ready()
        d = nba.next_best_action("c-42", consented_channels=["email"], timezone="Europe/Paris",
                                 categorical_features={"segment": "loyal"})
        if not d.action.no_contact:
            ...send it...
            nba.report_outcome(d.event_id, "open-1", "OPENED")

Errors are ``grpc.RpcError`` with the server's status code and message; ``failure_of(error)``
reads its details (the fields that were wrong, the reason). ``stream(requests)`` answers each
request of a campaign with its decision or its error, and goes on past bad records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from engine import convert, domain
from nba.v1 import decision_pb2 as pb
from nba.v1 import decision_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Failure:
    """Why a call, or one request of a stream, failed: the status code, the readable message,
    the ``nba.v1.ErrorReason`` name (e.g. ``ERROR_REASON_INVALID_FIELD``), the wrong fields as
    ``(field, description)`` and the ErrorInfo metadata."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    violations: tuple[tuple[str, str], ...] = ()
    metadata: Mapping[str, str] | None = None

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> Failure:
        code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
        reason, violations, metadata = "", (), {}
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = tuple((v.field, v.description) for v in bad.field_violations)
        return cls(code, status.message, reason, violations, metadata)


def failure_of(error: grpc.RpcError) -> Failure:
    """The details of a failed call (``grpc-status-details-bin``); code and message only when
    the server sent none (e.g. a transport error)."""
    status = rpc_status.from_call(error)
    if status is None:
        return Failure(error.code(), error.details() or "")
    return Failure.from_status(status)


class RequestFailed(Exception):
    """A request of ``decide_many`` got an error instead of a decision."""

    def __init__(self, position: int, failure: Failure):
        super().__init__(f"request #{position}: {failure.code.name}: {failure.message}")
        self.position, self.failure = position, failure


@dataclass(frozen=True)
class StreamAnswer:
    """One request's answer on a ``NextBestActions`` stream: its 0-based position, its
    request_id, and its decision or its failure (one of the two is None)."""

    position: int
    request_id: str
    decision: domain.Decision | None
    failure: Failure | None


class NBAClient:
    """A connection to ``nba serve``. ``token``: the bearer token of a server started with
    ``--tokens``. ``tls_ca``: the CA that signed the server's certificate (PEM file or bytes):
    connect over TLS; ``tls_cert``/``tls_key``: this client's certificate, for a server that asks
    for one (``--tls-client-ca``). ``server_name``: the name the server's certificate carries,
    when it is not the host of ``target``. Each client has a TCP connection of its own (not
    shared with other channels to the same target): several clients spread their calls over
    the processes of ``nba serve --processes N``."""

    def __init__(self, target: str, timeout: float = 5.0, *, token: str | None = None,
                 tls_ca: str | Path | bytes | None = None, tls_cert: str | Path | bytes | None = None,
                 tls_key: str | Path | bytes | None = None, server_name: str | None = None):
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        options = [("grpc.use_local_subchannel_pool", 1)]
        if tls_ca is not None or tls_cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(tls_ca), private_key=_pem(tls_key), certificate_chain=_pem(tls_cert))
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.DecisionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> NBAClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server reports SERVING (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        while True:
            status = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return
            if dt.datetime.now() > deadline:
                raise grpc.FutureTimeoutError()

    def next_best_action(self, customer_id: str, *,
                         numeric_features: Mapping[str, float] | None = None,
                         categorical_features: Mapping[str, str] | None = None,
                         consented_channels: Iterable[str] = (),
                         candidate_offers: Iterable[str] = (),
                         allowed_channels: Iterable[str] = (),
                         timezone: str = "", decision_time: dt.datetime | None = None,
                         inbound: bool = False) -> domain.Decision:
        request = domain.DecisionRequest(
            customer_id=customer_id, numeric_features=dict(numeric_features or {}),
            categorical_features=dict(categorical_features or {}),
            consented_channels=tuple(consented_channels), candidate_offers=tuple(candidate_offers),
            allowed_channels=tuple(allowed_channels), timezone=timezone,
            decision_time=decision_time, inbound=inbound)
        return self.decide(request)

    def decide(self, request: domain.DecisionRequest) -> domain.Decision:
        reply = self._stub.NextBestAction(convert.request_to_proto(request), timeout=self.timeout,
                                          metadata=self._metadata)
        return convert.decision_from_proto(reply.decision)

    def stream(self, requests: Iterable[domain.DecisionRequest | tuple[str, domain.DecisionRequest]],
               timeout: float | None = None) -> Iterator[StreamAnswer]:
        """Outbound campaign over one call: an answer per request, in order, each with its
        decision or its failure; a bad record does not end the stream. A request may come as
        ``(request_id, request)`` to have its id echoed."""
        def messages():
            for item in requests:
                request_id, request = item if isinstance(item, tuple) else ("", item)
                message = convert.request_to_proto(request, pb.NextBestActionsRequest)
                message.request_id = request_id
                yield message
        for reply in self._stub.NextBestActions(messages(), timeout=timeout, metadata=self._metadata):
            if reply.HasField("decision"):
                yield StreamAnswer(reply.position, reply.request_id, convert.decision_from_proto(reply.decision), None)
            else:
                yield StreamAnswer(reply.position, reply.request_id, None, Failure.from_status(reply.error))

    def decide_many(self, requests: Iterable[domain.DecisionRequest],
                    timeout: float | None = None) -> Iterator[domain.Decision]:
        """Outbound: stream many requests over one call; decisions come back in order. Raises
        RequestFailed at the first request that got an error (``stream`` goes on past them)."""
        for answer in self.stream(requests, timeout):
            if answer.failure is not None:
                raise RequestFailed(answer.position, answer.failure)
            yield answer.decision

    def report_outcome(self, event_id: str, outcome_id: str, type: str | domain.OutcomeType,
                       value: float = 0.0, time: dt.datetime | None = None) -> domain.OutcomeAck:
        kind = type if isinstance(type, domain.OutcomeType) else domain.OutcomeType(type)
        reply = self._stub.ReportOutcome(
            convert.outcome_to_proto(domain.Outcome(event_id, outcome_id, kind, value, time)),
            timeout=self.timeout, metadata=self._metadata)
        return domain.OutcomeAck(reply.event_id, reply.outcome_id, reply.duplicate)

    def policy(self) -> pb.GetPolicyResponse:
        return self._stub.GetPolicy(pb.GetPolicyRequest(), timeout=self.timeout, metadata=self._metadata)

    def forget_customer(self, customer_id: str) -> pb.ForgetCustomerResponse:
        """Admin: erase a customer (see ``engine.privacy``)."""
        return self._stub.ForgetCustomer(pb.ForgetCustomerRequest(customer_id=customer_id), timeout=self.timeout,
                                         metadata=self._metadata)

    def reload_policy(self) -> pb.ReloadPolicyResponse:
        """Admin: make the server check its --model-uri now (load a moved alias)."""
        return self._stub.ReloadPolicy(pb.ReloadPolicyRequest(), timeout=self.timeout, metadata=self._metadata)


def _pem(value: str | Path | bytes | None) -> bytes | None:
    """PEM bytes from bytes or a file path."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()
