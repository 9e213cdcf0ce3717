"""Who may call what: bearer tokens with roles, and TLS (mutual TLS with a client CA).

A tokens file (TOML) names each client, the SHA-256 of its token (never the token itself) and
its roles::

    [[client]]
    name = "email-router"
    sha256 = "3f4c..."            # nba token email-router --roles decide,report prints both
    roles = ["decide", "report"]

Roles: ``decide`` (NextBestAction, NextBestActions), ``report`` (ReportOutcome), ``admin``
(GetPolicy, ReloadPolicy, ForgetCustomer). Calls carry ``authorization: Bearer <token>``; a call
without a known token gets UNAUTHENTICATED, one whose client lacks the role PERMISSION_DENIED.
The health service is open (load balancers probe it), and so is server reflection unless
``--no-reflection``.
"""

from __future__ import annotations

import hashlib
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

import grpc

from engine.guards import current_client
from engine.settings import ConfigError

SERVICE = "/nba.v1.DecisionService/"
ROLES = {
    "NextBestAction": "decide", "NextBestActions": "decide",
    "ReportOutcome": "report",
    "GetPolicy": "admin", "ReloadPolicy": "admin", "ForgetCustomer": "admin",
}
KNOWN_ROLES = ("decide", "report", "admin")


@dataclass(frozen=True)
class Client:
    name: str
    roles: frozenset[str]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A random bearer token. The ``nba_`` prefix keeps it from starting with ``-``, which a command line
    would read as an option, and lets secret scanners recognise it."""
    return "nba_" + secrets.token_urlsafe(32)


def load_tokens(path: str | Path) -> dict[str, Client]:
    """SHA-256 of a token -> its client, from a tokens file; errors name the file and the entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--tokens {path}: cannot read file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--tokens {path}: not valid TOML: {exc}") from None
    clients = {}
    entries = data.get("client", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"--tokens {path}: expected [[client]] entries with name, sha256 and roles")
    for i, entry in enumerate(entries):
        where = f"--tokens {path}: client[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "sha256", "roles"}:
            raise ConfigError(f"{where}: expected exactly the keys name, sha256, roles")
        digest, roles = entry["sha256"], entry["roles"]
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}: sha256 must be 64 lowercase hex digits (nba token prints it)")
        if not isinstance(roles, list) or not roles or any(r not in KNOWN_ROLES for r in roles):
            raise ConfigError(f"{where}: roles must be a non-empty list from {list(KNOWN_ROLES)}, got {roles!r}")
        if digest in clients:
            raise ConfigError(f"{where}: the same token as client {clients[digest].name!r}")
        clients[digest] = Client(str(entry["name"]), frozenset(roles))
    return clients


class TokenInterceptor(grpc.ServerInterceptor):
    """Checks each DecisionService call's bearer token and role; other services pass."""

    def __init__(self, clients: dict[str, Client]):
        self.clients = clients

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if not method.startswith(SERVICE):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        role = ROLES.get(method[len(SERVICE):], "admin")
        token = _bearer(handler_call_details.invocation_metadata)
        client = self.clients.get(token_digest(token)) if token else None
        if client is None:
            why = "missing bearer token" if token is None else "unknown bearer token"
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED,
                             f"{why}: send 'authorization: Bearer <token>' metadata")
        if role not in client.roles:
            return _refusing(handler, grpc.StatusCode.PERMISSION_DENIED,
                             f"client {client.name!r} lacks the role {role!r} that {method[len(SERVICE):]} needs")
        return _as_client(handler, client.name)


def _bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip() or None
    return None


def _refusing(handler, code: grpc.StatusCode, details: str):
    """A handler of the same kind as ``handler`` that ends the call with ``code``."""
    def abort(request_or_iterator, context):
        context.abort(code, details)

    def abort_stream(request_or_iterator, context):
        context.abort(code, details)
        yield  # pragma: no cover - a generator, as a streaming handler must be

    kw = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kw)
    return grpc.unary_unary_rpc_method_handler(abort, **kw)


def _as_client(handler, name: str):
    """``handler`` with the client's name set for the call (rate limits, logs)."""
    def unary(behaviour):
        def run(request, context):
            current_client.set(name)
            return behaviour(request, context)
        return run

    def streaming(behaviour):
        def run(request, context):
            current_client.set(name)
            yield from behaviour(request, context)
        return run

    kw = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **kw)
    return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kw)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # mutual TLS: clients must present a certificate it signed

    def credentials(self) -> grpc.ServerCredentials:
        def read(flag: str, path: Path) -> bytes:
            try:
                return path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{flag} {path}: cannot read file: {exc.strerror or exc}") from None
        ca = read("--tls-client-ca", self.client_ca) if self.client_ca else None
        return grpc.ssl_server_credentials([(read("--tls-key", self.key), read("--tls-cert", self.cert))],
                                           root_certificates=ca, require_client_auth=ca is not None)
