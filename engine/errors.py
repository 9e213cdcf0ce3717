"""gRPC errors with structured details (AIP-193): a ``google.rpc.Status`` whose details hold a
``google.rpc.ErrorInfo`` (its ``reason`` the name of an ``nba.v1.ErrorReason`` value, domain
``nba.v1``) and, for a caller's mistake, a ``google.rpc.BadRequest`` naming each wrong field.

A unary call fails with it (``grpc-status-details-bin`` trailer, read by grpcio-status's
``rpc_status.from_call``, grpc-go's ``status.FromError``, grpc-java's ``StatusProto``); a
``NextBestActions`` stream carries it in the failing request's response and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from engine.domain import RequestError
from nba.v1 import decision_pb2 as pb

DOMAIN = "nba.v1"


class CallError(Exception):
    """A call's (or a stream request's) failure: status code, readable message, reason (an
    ``nba.v1.ErrorReason`` value), field violations ``(field, description)`` and metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: int, *,
                 violations: tuple[tuple[str, str], ...] = (), metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason
        self.violations, self.metadata = violations, dict(metadata or {})

    @classmethod
    def invalid(cls, exc: RequestError, prefix: str = "") -> CallError:
        """INVALID_ARGUMENT for a caller's mistake, with its field violation."""
        return cls(grpc.StatusCode.INVALID_ARGUMENT, f"{prefix}{exc}", pb.ERROR_REASON_INVALID_FIELD,
                   violations=((exc.field, exc.description),))

    def status(self) -> status_pb2.Status:
        """The ``google.rpc.Status``: code, message, ErrorInfo and (if any) BadRequest."""
        info = error_details_pb2.ErrorInfo(reason=pb.ErrorReason.Name(self.reason), domain=DOMAIN,
                                           metadata=self.metadata)
        details = [_packed(info)]
        if self.violations:
            details.append(_packed(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in self.violations])))
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=details)

    def abort(self, context: grpc.ServicerContext) -> None:
        """End the call with this error (raises, as ``context.abort`` does)."""
        context.abort_with_status(rpc_status.to_status(self.status()))


def _packed(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
