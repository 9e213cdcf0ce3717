"""Prometheus metrics of ``nba serve --metrics-port PORT`` (``prometheus-client``).

What is counted as it happens (by the gRPC service):

    nba_decisions_total{channel, offer, explored, control, fallback}
    nba_exclusions_total{reason}                    actions left out, by why (CONSENT, PRESSURE, ...)
    nba_outcomes_total{type}                        outcomes joined (duplicates not counted)
    nba_rpc_seconds{rpc}                            latency histogram; for NextBestActions, each
                                                    decision on the stream
    nba_rpc_errors_total{rpc, code}                 calls (stream messages) that ended in an error

What is read from the engine every ``refresh_seconds`` (default 5):

    nba_budget_spent_eur{budget}, nba_budget_committed_eur{budget}, nba_budget_plan_eur{budget},
    nba_budget_shadow_price{budget}                 the current period, as GetPolicy shows it
    nba_pending_decisions                           decisions waiting for their window to close
    nba_model_updates, nba_model_info{version}      the served model
    nba_engine_events_total{event}                  learned, rejected, reserve_conflicts,
                                                    rewards_clipped, model_rollbacks, forgotten
    nba_state_store_errors_total                    state store (Redis) calls that failed

With ``--processes N`` each process writes its metrics to files in a directory the parent
names (``PROMETHEUS_MULTIPROC_DIR``) and the parent serves their sum on the one port; gauges
of the shared state (budgets, pending) show the most recent reading, the model's gauges one
series per process (``pid``).
"""

from __future__ import annotations

import collections
import logging
import os
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

log = logging.getLogger("nba.metrics")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ENGINE_EVENTS = ("learned", "rejected", "reserve_conflicts", "rewards_clipped", "model_rollbacks", "forgotten")


class Metrics:
    """The metrics of one server process (see the module), in a registry of their own
    (``registry``), or, in a ``--processes`` child, in files only, which the parent reads."""

    def __init__(self, refresh_seconds: float = 5.0):
        if refresh_seconds <= 0:
            raise ValueError(f"metrics refresh must be > 0 seconds, got {refresh_seconds}")
        disable_created_metrics()  # no *_created series: a start time per label set is noise here
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.refresh_seconds = refresh_seconds
        r = {"registry": self.registry}
        self.decisions = Counter("nba_decisions", "Decisions made", ["channel", "offer", "explored", "control",
                                                                    "fallback"], **r)
        self.exclusions = Counter("nba_exclusions", "Actions left out of a decision, by reason", ["reason"], **r)
        self.outcomes = Counter("nba_outcomes", "Outcomes joined to their decision (duplicates not counted)",
                                ["type"], **r)
        self.rpc_seconds = Histogram("nba_rpc_seconds", "Time to answer a call (a stream: each decision)", ["rpc"],
                                     buckets=LATENCY_BUCKETS, **r)
        self.rpc_errors = Counter("nba_rpc_errors", "Calls (stream messages) that ended in an error",
                                  ["rpc", "code"], **r)
        shared = {"multiprocess_mode": "mostrecent"}
        own = {"multiprocess_mode": "liveall"}
        self.spent = Gauge("nba_budget_spent_eur", "Incentives paid this budget period", ["budget"], **shared, **r)
        self.committed = Gauge("nba_budget_committed_eur", "Incentives committed by pending decisions", ["budget"],
                               **shared, **r)
        self.plan = Gauge("nba_budget_plan_eur", "What the pacing plan allows to have spent by now", ["budget"],
                          **shared, **r)
        self.shadow_price = Gauge("nba_budget_shadow_price", "The pacer's price of one EUR of this budget",
                                  ["budget"], **shared, **r)
        self.pending = Gauge("nba_pending_decisions", "Decisions whose attribution window is open", **shared, **r)
        self.model_updates = Gauge("nba_model_updates", "Updates the served model has learned", **own, **r)
        self.model_info = Gauge("nba_model_info", "The served model's version (1)", ["version"], **own, **r)
        self.engine_events = Counter("nba_engine_events", "Engine events", ["event"], **r)
        self.store_errors = Counter("nba_state_store_errors", "State store (Redis) calls that failed", **r)
        self._seen: collections.Counter[str] = collections.Counter()
        self._version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- as it happens ------------------------------------------------------------------------

    def decided(self, decision) -> None:
        a = decision.action
        self.decisions.labels("none" if a.no_contact else a.channel, "none" if a.no_contact else a.offer_id,
                              _yes(decision.explored), _yes(decision.control), _yes(decision.fallback)).inc()
        if decision.exclusions:
            for reason, n in collections.Counter(e.reason.value for e in decision.exclusions).items():
                self.exclusions.labels(reason).inc(n)

    def outcome(self, kind: str) -> None:
        self.outcomes.labels(kind).inc()

    def answered(self, rpc: str, seconds: float, code: str | None = None) -> None:
        self.rpc_seconds.labels(rpc).observe(seconds)
        if code is not None:
            self.rpc_errors.labels(rpc, code).inc()

    # -- read every refresh_seconds -------------------------------------------------------------

    def refresh(self, engine) -> None:
        """Read the engine's state into the gauges and counters read from it."""
        policy = engine.policy()
        for b in policy.budgets:
            if b.usage is not None:
                self.spent.labels(b.budget.id).set(b.usage.paid_cents / 100)
                self.committed.labels(b.budget.id).set(b.usage.committed_cents / 100)
            self.plan.labels(b.budget.id).set(b.plan)
            self.shadow_price.labels(b.budget.id).set(b.shadow_price)
        if policy.counters["pending"] >= 0:
            self.pending.set(policy.counters["pending"])
        self.model_updates.set(engine.model.updates)
        if policy.model_version != self._version:
            if self._version is not None:
                self.model_info.labels(self._version).set(0)
            self.model_info.labels(policy.model_version).set(1)
            self._version = policy.model_version
        for event in ENGINE_EVENTS:
            self._count(self.engine_events.labels(event), event, policy.counters[event])
        failures = getattr(engine.store, "failures", policy.counters["store_errors"])
        self._count(self.store_errors, "store_errors", failures)

    def _count(self, counter, key: str, total: int) -> None:
        if total > self._seen[key]:
            counter.inc(total - self._seen[key])
            self._seen[key] = total

    def start(self, engine) -> None:
        self.refresh(engine)

        def loop():
            while not self._stop.wait(self.refresh_seconds):
                try:
                    self.refresh(engine)
                except Exception:  # noqa: BLE001 - metrics must not take the server down; say so
                    log.exception("metrics refresh failed")
        self._thread = threading.Thread(target=loop, name="nba-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def serve_http(registry, host: str, port: int):
    """Serve ``registry`` at http://host:port/metrics (``port`` 0: a free one); returns the
    HTTP server (``server_port``, ``shutdown()``)."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(f"--metrics-port {port}: cannot listen on {host}:{port}: {exc.strerror}") from None
    return server


def multiprocess_registry():
    """The parent's view of its ``--processes`` children's metrics files."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
