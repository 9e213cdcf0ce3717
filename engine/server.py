"""The gRPC server: a thin servicer over DecisionEngine, plus health, reflection and shutdown.

Status codes: caller mistakes and undecodable bytes -> INVALID_ARGUMENT (naming the field), unknown event ->
NOT_FOUND, closed attribution window -> FAILED_PRECONDITION, expired deadline ->
DEADLINE_EXCEEDED (nothing decided or logged), state store (Redis) unreachable while reporting
an outcome -> UNAVAILABLE (retry it; decisions never fail on it: they go to safe mode), too many
calls or streams, a client over its rate -> RESOURCE_EXHAUSTED (``engine.guards``), no or an
unknown token -> UNAUTHENTICATED, a client without the role -> PERMISSION_DENIED
(``engine.auth``). INTERNAL is only ever a bug of ours.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

from engine import convert
from engine.auth import TlsFiles, TokenInterceptor
from engine.domain import AttributionClosed, RequestError, UnknownEvent
from engine.errors import CallError
from engine.guards import RateLimiter, ServerLimits, StreamGuard, Undecodable, client_of, tolerant
from engine.pipeline import DecisionEngine
from engine.state import StoreUnavailable
from engine.validation import shown
from nba.v1 import decision_pb2 as pb
from nba.v1 import decision_pb2_grpc as pb_grpc

log = logging.getLogger("nba.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DecisionService"].full_name


class DecisionServicer(pb_grpc.DecisionServiceServicer):
    def __init__(self, engine: DecisionEngine, follower=None, limits: ServerLimits = ServerLimits(),
                 metrics=None):
        self.engine = engine
        self.metrics = metrics  # engine.metrics.Metrics, with --metrics-port
        self.follower = follower  # engine.model_follower.ModelFollower, with --model-uri
        self.limits = limits
        self.streams = StreamGuard(limits)
        self.rate = RateLimiter(limits.rate_per_client, limits.rate_burst)

    def _admit(self, context: grpc.ServicerContext, request) -> None:
        """Refuse an undecodable request, or a client over its rate (raises CallError)."""
        if isinstance(request, Undecodable):
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, request.describe(), pb.ERROR_REASON_UNDECODABLE)
        if not self.rate.allow(client_of(context)):
            raise CallError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"more than {self.limits.rate_per_client:g} requests a second from this client "
                            "(--rate-per-client): slow down and retry", pb.ERROR_REASON_RATE_LIMITED)

    def _decide(self, message, context: grpc.ServicerContext) -> pb.Decision:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline expired before deciding",
                            pb.ERROR_REASON_DEADLINE)
        try:
            decision = self.engine.decide(convert.request_from_proto(message))
        except RequestError as exc:
            raise CallError.invalid(exc) from None
        if self.metrics is not None:
            self.metrics.decided(decision)
        return convert.decision_to_proto(decision, self.engine.catalog.currency)

    def _timed(self, rpc: str, context: grpc.ServicerContext, call):
        """``_guard(context, call)``, its time and its error code (if any) recorded in the metrics."""
        if self.metrics is None:
            return _guard(context, call)
        started = time.perf_counter()
        try:
            result = _guard(context, call)
        except Exception:
            code = context.code()
            self.metrics.answered(rpc, time.perf_counter() - started, code.name if code else "UNKNOWN")
            raise
        self.metrics.answered(rpc, time.perf_counter() - started)
        return result

    def NextBestAction(self, request, context):
        def decide():
            self._admit(context, request)
            return pb.NextBestActionResponse(decision=self._decide(request, context))
        return self._timed("NextBestAction", context, decide)

    def NextBestActions(self, request_iterator, context):
        stream = self.streams.open(context)
        if stream is None:
            CallError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"{self.limits.max_streams} NextBestActions streams are open on this server "
                      "(--max-streams): retry later, or send on an open stream", pb.ERROR_REASON_SERVER_LIMIT,
                      metadata={"limit": "max_streams"}).abort(context)
        try:
            for position, request in enumerate(request_iterator):
                stream.received()
                if not context.is_active():
                    return
                if position >= self.limits.stream_max_requests:
                    CallError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"a stream takes at most {self.limits.stream_max_requests:,} requests "
                              "(--stream-max-requests): open a new one for the rest", pb.ERROR_REASON_SERVER_LIMIT,
                              metadata={"limit": "stream_max_requests"}).abort(context)
                yield self._stream_answer(position, request, context)
                stream.answered()
        finally:
            self.streams.close(stream)

    def _stream_answer(self, position: int, request, context) -> pb.NextBestActionsResponse:
        """One request's response on the stream: its decision, or its error (the stream goes on;
        only an expired deadline ends it)."""
        started = time.perf_counter()
        request_id = "" if isinstance(request, Undecodable) else request.request_id[:MAX_REQUEST_ID]
        error = None
        try:
            self._admit(context, request)
            if len(request.request_id) > MAX_REQUEST_ID:
                raise CallError.invalid(RequestError(
                    "request_id", f"longer than {MAX_REQUEST_ID} characters ({len(request.request_id)})"))
            answer = pb.NextBestActionsResponse(position=position, request_id=request_id,
                                                decision=self._decide(request, context))
        except CallError as exc:
            if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                exc.abort(context)
            error = exc
        except Exception as exc:  # noqa: BLE001 - one request's bug must not end the campaign
            log.exception("internal error on stream request %d", position)
            error = CallError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}",
                              pb.ERROR_REASON_INTERNAL)
        if error is not None:
            answer = pb.NextBestActionsResponse(position=position, request_id=request_id, error=error.status())
        if self.metrics is not None:
            self.metrics.answered("NextBestActions", time.perf_counter() - started,
                                  error.code.name if error is not None else None)
        return answer

    def ReportOutcome(self, request, context):
        def report():
            self._admit(context, request)
            try:
                if request.currency_code and request.currency_code != self.engine.catalog.currency:
                    raise RequestError("currency_code", f"{shown(request.currency_code)} is not this server's "
                                                        f"currency ({self.engine.catalog.currency}); convert first")
                outcome = convert.outcome_from_proto(request)
                ack = self.engine.report_outcome(outcome)
            except RequestError as exc:
                raise CallError.invalid(exc) from None
            except UnknownEvent as exc:
                raise CallError(grpc.StatusCode.NOT_FOUND, str(exc), pb.ERROR_REASON_EVENT_NOT_FOUND,
                                metadata={"event_id": request.event_id[:MAX_REQUEST_ID]}) from None
            except AttributionClosed as exc:
                raise CallError(grpc.StatusCode.FAILED_PRECONDITION, str(exc), pb.ERROR_REASON_ATTRIBUTION_CLOSED,
                                metadata={"event_id": request.event_id[:MAX_REQUEST_ID]}) from None
            except StoreUnavailable as exc:
                raise _store_unavailable(exc) from None
            if self.metrics is not None and not ack.duplicate:
                self.metrics.outcome(outcome.type.value)
            return pb.ReportOutcomeResponse(event_id=ack.event_id, outcome_id=ack.outcome_id,
                                            duplicate=ack.duplicate)
        return self._timed("ReportOutcome", context, report)

    def GetPolicy(self, request, context):
        def policy():
            self._admit(context, request)
            return convert.policy_to_proto(self.engine.policy(), self.engine.catalog.currency)
        return self._timed("GetPolicy", context, policy)

    def ReloadPolicy(self, request, context):
        def reload():
            self._admit(context, request)
            if self.follower is None:
                raise CallError(grpc.StatusCode.FAILED_PRECONDITION,
                                "this server follows no model URI (start it with --model-uri)",
                                pb.ERROR_REASON_NO_MODEL_URI)
            try:
                r = self.follower.check()
            except Exception as exc:  # registry unreachable, broken model: keep serving
                log.warning("reload of %s failed: %s", self.follower.model_uri, exc)
                raise CallError(grpc.StatusCode.UNAVAILABLE,
                                f"could not load {self.follower.model_uri} (still serving "
                                f"{self.engine.model.version}): {exc}", pb.ERROR_REASON_MODEL_UNAVAILABLE,
                                metadata={"model_uri": self.follower.model_uri}) from None
            return pb.ReloadPolicyResponse(model_uri=r.model_uri, previous_version=r.previous_version,
                                           model_version=r.model_version, reloaded=r.reloaded)
        return self._timed("ReloadPolicy", context, reload)

    def ForgetCustomer(self, request, context):
        def forget():
            self._admit(context, request)
            try:
                gone = self.engine.forget(request.customer_id)
            except RequestError as exc:
                raise CallError.invalid(exc) from None
            except StoreUnavailable as exc:
                raise _store_unavailable(exc) from None
            return pb.ForgetCustomerResponse(contacts_deleted=gone.contacts, pending_deleted=gone.pending,
                                             released=gone.released_cents / 100, known=gone.had_state,
                                             currency_code=self.engine.catalog.currency)
        return self._timed("ForgetCustomer", context, forget)


MAX_REQUEST_ID = 128


def _store_unavailable(exc: Exception) -> CallError:
    return CallError(grpc.StatusCode.UNAVAILABLE, f"state store unreachable, retry: {exc}",
                     pb.ERROR_REASON_STATE_STORE_UNAVAILABLE)


def _guard(context: grpc.ServicerContext, call):
    """Run a handler; a CallError ends the call with its status and details, an unexpected
    exception is logged and becomes INTERNAL."""
    try:
        return call()
    except CallError as exc:
        exc.abort(context)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if context.code() is not None:  # context.abort() already set the status
            raise
        log.exception("internal error")
        CallError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}",
                  pb.ERROR_REASON_INTERNAL).abort(context)


def service_handler(servicer: DecisionServicer) -> grpc.GenericRpcHandler:
    """The DecisionService's methods, from its descriptor, each with a deserializer that never
    raises (undecodable bytes become INVALID_ARGUMENT in the handler, not INTERNAL)."""
    handlers = {}
    service = pb.DESCRIPTOR.services_by_name["DecisionService"]
    for method in service.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        kind = (grpc.stream_stream_rpc_method_handler if method.client_streaming and method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = kind(getattr(servicer, method.name), request_deserializer=tolerant(request_class),
                                     response_serializer=response_class.SerializeToString)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(server: grpc.Server, services: tuple[str, ...]) -> None:
    """Server reflection under both names tools ask for: ``grpc.reflection.v1alpha`` (what
    grpcio-reflection serves) and ``grpc.reflection.v1`` (newer grpcurl, Postman, grpcui).
    The two protocols are the same messages in different packages, so v1 is served by
    v1alpha's servicer on the same bytes; its descriptor (v1alpha's, renamed) is added to the
    pool so that v1 itself can be described."""
    _register_reflection_v1_descriptor()
    names = (*services, reflection.SERVICE_NAME, REFLECTION_V1)
    reflection.enable_server_reflection(names, server)
    servicer = reflection.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": handler}),))


def _register_reflection_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(REFLECTION_V1)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = file.package, "grpc.reflection.v1"
    file.name, file.package = "grpc/reflection/v1/reflection.proto", new
    file.options.Clear()
    for message in file.message_type:
        for f in message.field:
            if f.type_name.startswith(f".{old}."):
                f.type_name = f".{new}." + f.type_name[len(old) + 2:]
    for method in file.service[0].method:
        method.input_type = f".{new}." + method.input_type[len(old) + 2:]
        method.output_type = f".{new}." + method.output_type[len(old) + 2:]
    pool.AddSerializedFile(file.SerializeToString())


@dataclass(frozen=True)
class Security:
    """TLS (and mutual TLS), bearer tokens with roles, reflection (``engine.auth``)."""

    tls: TlsFiles | None = None
    tokens: dict | None = None     # token SHA-256 -> engine.auth.Client
    reflection: bool = True


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    port: int
    engine: DecisionEngine
    _stop_maturing: threading.Event
    follower: object = None
    servicer: DecisionServicer | None = None
    checkpoint: object = None
    metrics: object = None       # engine.metrics.Metrics
    metrics_http: object = None  # its HTTP server (``server_port``)

    def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls, let in-flight calls finish (up to ``grace`` s), close logs."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.follower is not None:
            self.follower.stop()
        if self.servicer is not None:
            self.servicer.streams.stop()
        self._stop_maturing.set()
        self.engine.mature()
        if self.checkpoint is not None:
            self.checkpoint.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()
        self.engine.close()


def start_server(engine: DecisionEngine, *, host: str = "127.0.0.1", port: int = 50051,
                 limits: ServerLimits = ServerLimits(), security: Security = Security(),
                 max_message_bytes: int = 4 * 1024 * 1024, mature_every: float = 1.0, follower=None,
                 checkpoint=None, interceptors: tuple = (), reuse_port: bool = False, metrics=None,
                 metrics_port: int | None = None) -> RunningServer:
    """Start serving; ``port=0`` picks a free port (see ``RunningServer.port``). ``follower``
    (``engine.model_follower.ModelFollower``) keeps the model on a registry alias; it is started
    here, before the server reports SERVING; so is ``checkpoint`` (``engine.checkpoint.
    ModelCheckpoint``), after resuming the model it saved if it grew from the one serving.
    ``interceptors`` (``grpc.ServerInterceptor``) wrap every call, after the token check when
    there is one. ``reuse_port``: other processes may listen on the same port (SO_REUSEPORT;
    the kernel spreads connections over them). ``metrics`` (``engine.metrics.Metrics``): recorded,
    and served at http://host:metrics_port/metrics when ``metrics_port`` is given (0: a free port;
    see ``RunningServer.metrics_http``)."""
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", int(reuse_port)), *limits.grpc_options()]
    if security.tokens is not None:
        interceptors = (TokenInterceptor(security.tokens), *interceptors)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=limits.max_calls, thread_name_prefix="nba-worker"),
                         interceptors=tuple(interceptors), options=options,
                         maximum_concurrent_rpcs=limits.max_calls)
    if follower is not None:
        follower.start()
    if checkpoint is not None:
        checkpoint.resume()
        checkpoint.start()
    servicer = DecisionServicer(engine, follower, limits, metrics)
    server.add_generic_rpc_handlers((service_handler(servicer),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    if security.reflection:
        enable_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))
    address = f"{host}:{port}"
    bound = (server.add_secure_port(address, security.tls.credentials()) if security.tls
             else server.add_insecure_port(address))
    if bound == 0:
        raise OSError(f"cannot listen on {address} (address in use or not allowed)")
    metrics_http = None
    if metrics is not None and metrics_port is not None:
        from engine.metrics import serve_http

        metrics_http = serve_http(metrics.registry, host, metrics_port)
    server.start()

    stop = threading.Event()
    if not engine.honour_request_time:
        # On the wall clock, windows close with time passing, not only on calls.
        def mature_loop():
            while not stop.wait(mature_every):
                try:
                    engine.mature()
                except Exception:  # noqa: BLE001 - keep learning alive, but say so
                    log.exception("maturing decisions failed")
        threading.Thread(target=mature_loop, name="nba-mature", daemon=True).start()

    if metrics is not None:
        metrics.start(engine)

    # The model is loaded by now (the engine owns it): ready.
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, bound, engine, stop, follower, servicer, checkpoint, metrics,
                         metrics_http)


def serve_forever(running: RunningServer, grace: float = 10.0, poll: float = 0.1) -> None:
    """Block until SIGTERM or SIGINT, then shut down gracefully.

    The main thread polls: a signal the kernel delivers to one of gRPC's threads only sets a
    flag that the main thread acts on when it next runs Python code, which a wait without a
    timeout may never do (the server then hung on SIGTERM, about one time in twelve under
    load). The handler takes no lock (it may run while the main thread holds one): it only
    records the signal."""
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not received:
        time.sleep(poll)
    log.info("signal %s: shutting down (grace %.0f s)", signal.Signals(received[0]).name, grace)
    running.stop(grace)
    log.info("stopped")


def start_server_process(log_dir: Path, seed: int, extra: list[str] = (),
                         output: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    """Run ``nba serve --port 0`` in a process of its own and return the process and the port it
    bound (``nba channel-demo``, ``nba simulate --policies engine_grpc``, tests, benchmarks).
    ``output``: gets the lines the server printed until then."""
    if "--state-dir" not in extra:
        extra = [*extra, "--state-dir", str(Path(log_dir) / "state")]
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--log-dir", str(log_dir),
           "--seed", str(seed), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    said: list[str] = []
    for line in proc.stdout:
        said.append(line)
        if output is not None:
            output.append(line)
        match = re.search(r"serving nba\.v1\.DecisionService on [^:]+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {' '.join(cmd)}\n{''.join(said[-5:])}")
