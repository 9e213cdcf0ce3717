"""What keeps one caller from stalling the server for the others.

* **Bounded calls.** The server runs at most ``ServerLimits.max_calls`` calls at once, one
  thread each (gRPC's ``maximum_concurrent_rpcs``, equal to the thread pool): a call beyond it
  gets RESOURCE_EXHAUSTED at once instead of waiting for a thread behind idle ones.
* **Bounded streams.** At most ``max_streams`` ``NextBestActions`` streams at once, fewer than
  the calls, so streams can never take every thread: health checks and unary decisions keep
  threads of their own. A stream beyond it gets RESOURCE_EXHAUSTED.
* **Idle and old streams are closed.** A watchdog cancels a stream that sent nothing for
  ``stream_idle_seconds`` or has been open for ``stream_max_seconds`` (the client sees
  CANCELLED; the server logs why), and a stream ends with RESOURCE_EXHAUSTED after
  ``stream_max_requests`` requests.
* **An optional rate per client** (token bucket, by authenticated client or by peer address).
* **Keepalive enforcement**: gRPC's HTTP/2 options below (dead peers are pinged and dropped,
  clients that ping too often are refused, idle connections closed).

A request whose bytes are not a valid protobuf message is INVALID_ARGUMENT, without a
traceback per call: the server's deserializers never raise (``tolerant``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger("nba.server")


@dataclass(frozen=True)
class ServerLimits:
    max_calls: int = 64
    max_streams: int = 16
    stream_idle_seconds: float = 60.0
    stream_max_seconds: float = 3600.0
    stream_max_requests: int = 10_000_000
    rate_per_client: float = 0.0  # requests a second per client (0: no limit)
    rate_burst: float = 0.0       # bucket size (0: one second's worth)

    def __post_init__(self):
        if self.max_calls < 2:
            raise ValueError(f"--max-calls must be at least 2, got {self.max_calls}")
        if not 1 <= self.max_streams < self.max_calls:
            raise ValueError(f"--max-streams must be from 1 to --max-calls - 1 ({self.max_calls - 1}), "
                             f"got {self.max_streams}")
        for name in ("stream_idle_seconds", "stream_max_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.stream_max_requests < 1:
            raise ValueError(f"--stream-max-requests must be at least 1, got {self.stream_max_requests}")
        if self.rate_per_client < 0:
            raise ValueError(f"--rate-per-client must be >= 0, got {self.rate_per_client}")

    def grpc_options(self) -> list[tuple[str, int]]:
        """HTTP/2 keepalive enforcement and connection hygiene."""
        return [
            ("grpc.keepalive_time_ms", 60_000),             # ping a silent peer every minute...
            ("grpc.keepalive_timeout_ms", 20_000),          # ...and drop it if it does not answer
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # refuse ping floods
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.max_connection_idle_ms", 15 * 60_000),   # close connections unused for 15 min
        ]


class Undecodable:
    """What a tolerant deserializer gives for bytes that are not the expected message."""

    def __init__(self, message_name: str, error: str):
        self.message_name, self.error = message_name, error

    def describe(self) -> str:
        return f"the request's bytes are not a valid {self.message_name} message ({self.error[:100]})"


def tolerant(message_class):
    """A request deserializer that never raises: undecodable bytes become ``Undecodable``."""
    name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes):
        try:
            return message_class.FromString(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            return Undecodable(name, str(exc) or type(exc).__name__)
    return deserialize


class StreamGuard:
    """Admits at most ``max_streams`` streams and cancels idle or old ones (see the module).

    Thread safety: ``_lock`` guards ``_streams``; it is held only to add, remove or list them,
    never while a context is cancelled (cancelling can call back into gRPC)."""

    def __init__(self, limits: ServerLimits, tick: float = 0.5):
        self.limits = limits
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._next = 0
        self._stop = threading.Event()
        self.closed = {"idle": 0, "age": 0, "refused": 0}
        self._thread = threading.Thread(target=self._watch, args=(tick,), name="nba-streams", daemon=True)
        self._thread.start()

    def open(self, context: grpc.ServicerContext) -> _Stream | None:
        """The stream's handle, or None when ``max_streams`` are open already."""
        with self._lock:
            if len(self._streams) >= self.limits.max_streams:
                self.closed["refused"] += 1
                return None
            self._next += 1
            stream = _Stream(self._next, context, self)
            self._streams[stream.id] = stream
            return stream

    def close(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.pop(stream.id, None)

    def active(self) -> int:
        with self._lock:
            return len(self._streams)

    def _watch(self, tick: float) -> None:
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                streams = list(self._streams.values())
            for s in streams:
                why = None
                if now - s.last_request > self.limits.stream_idle_seconds and not s.busy:
                    why = "idle"
                elif now - s.opened > self.limits.stream_max_seconds:
                    why = "age"
                if why:
                    self.closed[why] += 1
                    log.info("closing a NextBestActions stream from %s: %s", s.peer,
                             f"no request for {self.limits.stream_idle_seconds:g} s" if why == "idle"
                             else f"open for more than {self.limits.stream_max_seconds:g} s")
                    self.close(s)
                    s.context.cancel()

    def stop(self) -> None:
        self._stop.set()


class _Stream:
    def __init__(self, stream_id: int, context: grpc.ServicerContext, guard: StreamGuard):
        self.id, self.context, self.guard = stream_id, context, guard
        self.peer = context.peer()
        self.opened = self.last_request = time.monotonic()
        self.busy = False  # deciding a request: not idle, whatever the time since it came

    def received(self) -> None:
        self.last_request, self.busy = time.monotonic(), True

    def answered(self) -> None:
        self.last_request, self.busy = time.monotonic(), False


class RateLimiter:
    """A token bucket per client: ``rate`` requests a second, up to ``burst`` at once.
    Thread safety: one lock around the buckets (microseconds)."""

    def __init__(self, rate: float, burst: float = 0.0, max_clients: int = 100_000):
        self.rate, self.burst = rate, burst or max(rate, 1.0)
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        self.refused = 0

    def allow(self, client: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if ok else tokens, now)
            if len(self._buckets) > self.max_clients:  # forget the longest-idle clients
                for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[: self.max_clients // 10]:
                    del self._buckets[key]
            if not ok:
                self.refused += 1
            return ok


# The authenticated client of the call this thread is running (set by ``engine.auth``).
current_client: contextvars.ContextVar[str | None] = contextvars.ContextVar("nba_client", default=None)


def client_of(context: grpc.ServicerContext) -> str:
    """Who is calling: the authenticated client's name, else the peer's address without its port."""
    name = current_client.get()
    if name:
        return name
    peer = context.peer() or "unknown"
    return peer.rsplit(":", 1)[0] if ":" in peer else peer
