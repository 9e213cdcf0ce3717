"""A small Python client for channel systems.

    with NBAClient("127.0.0.1:50051") as nba:
        nba.wait_ready()
        d = nba.next_best_action("c-42", consented_channels=["email"], timezone="Europe/Paris",
                                 categorical_features={"segment": "loyal"})
        if not d.action.no_contact:
            ...send it...
            nba.report_outcome(d.event_id, "open-1", "OPENED")

Errors are ``grpc.RpcError`` with the server's status code and message (INVALID_ARGUMENT names
the field that was wrong).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine import convert, domain
from nba.v1 import decision_pb2 as pb
from nba.v1 import decision_pb2_grpc as pb_grpc


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
        return convert.decision_from_proto(reply)

    def decide_many(self, requests: Iterable[domain.DecisionRequest],
                    timeout: float | None = None) -> Iterator[domain.Decision]:
        """Outbound: stream many requests over one call; decisions come back in order."""
        stream = self._stub.NextBestActions((convert.request_to_proto(r) for r in requests),
                                            timeout=timeout, metadata=self._metadata)
        for reply in stream:
            yield convert.decision_from_proto(reply)

    def report_outcome(self, event_id: str, outcome_id: str, type: str | domain.OutcomeType,
                       value: float = 0.0, time: dt.datetime | None = None) -> domain.OutcomeAck:
        kind = type if isinstance(type, domain.OutcomeType) else domain.OutcomeType(type)
        reply = self._stub.ReportOutcome(
            convert.outcome_to_proto(domain.Outcome(event_id, outcome_id, kind, value, time)),
            timeout=self.timeout, metadata=self._metadata)
        return domain.OutcomeAck(reply.event_id, reply.outcome_id, reply.duplicate)

    def policy(self) -> pb.PolicyInfo:
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
