"""Load test of several ``nba serve`` processes sharing one Redis (or a Redis Cluster).

Concurrent clients send ``NextBestAction`` calls for a small pool of customers, round-robin over
the servers, so that one customer's requests land on different processes at the same moment.
Requests carry decision times spread over six days (servers run ``--honour-decision-time``), so
each customer is asked about many times a week and the weekly caps bind, not only the gap. The
catalog is the default one with uniform exploration (every feasible action equally likely, so
contacts and incentives are frequent), the default caps (<= 2 emails, <= 1 SMS, <= 3 contacts a
week, >= 24 h apart) and a small budget, unpaced, that runs out. A share of the incentives is reported
REDEEMED (to a random server), which settles them.

Afterwards the decision logs of all servers are replayed: every contact is checked against
every cap over exact sliding windows and against the minimum gap, and the incentives committed
are summed per budget period and compared with the amount and with Redis's own ledger (the
six days stay inside one attribution window, so nothing is released and the sum is exact).

Optionally Redis is killed (SIGKILL) part-way and restarted after ``down_seconds``: decisions
must keep coming (safe mode: no contact, flagged ``fallback``), and normal decisions resume.

Bounded: a fixed number of requests, loopback only, servers stopped at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from engine.catalog import Catalog, default_catalog_path, load_catalog
from engine.client import NBAClient
from engine.decision_log import log_files
from engine.server import start_server_process
from engine.domain import DecisionRequest


def load_test_catalog(directory: Path, budget: float) -> Path:
    """The default catalog with uniform exploration and a budget of ``budget`` EUR without pacing
    (so that the amount itself, not the plan, is what runs out)."""
    text = default_catalog_path().read_text()
    for old, new in (("[exploration]\n", "[exploration]\nepsilon = 1.0\n"),
                     ("amount = 20000.0", f"amount = {budget!r}\npacing = false"),
                     ('version = "default-2026.11"', 'version = "loadtest"')):
        if old not in text:
            raise RuntimeError(f"default catalog changed: {old!r} not found")
        text = text.replace(old, new)
    path = directory / "loadtest_catalog.toml"
    path.write_text(text)
    return path


@dataclasses.dataclass
class ClientStats:
    calls: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    fallback: int = 0
    contacts: int = 0
    budget_exclusions: int = 0
    pressure_exclusions: int = 0
    # (monotonic time, fallback?) of every decision, to measure recovery.
    timeline: list[tuple[float, bool]] = dataclasses.field(default_factory=list)
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    redeemed: list[str] = dataclasses.field(default_factory=list)
    outcome_retries: int = 0

    def record(self, d, latency_ms: float) -> None:
        """A decision the client received."""
        self.latencies_ms.append(latency_ms)
        self.timeline.append((time.monotonic(), d.fallback))
        self.fallback += d.fallback
        self.contacts += not d.action.no_contact
        reasons = {e.reason.value for e in d.exclusions}
        self.budget_exclusions += "BUDGET" in reasons
        self.pressure_exclusions += "PRESSURE" in reasons


def request_for(customer: int) -> DecisionRequest:
    return DecisionRequest(
        customer_id=f"load-{customer:05d}",
        numeric_features={"basket": 40.0 + customer % 65},
        categorical_features={"segment": ("new", "loyal", "occasional", "dormant")[customer % 4]},
        consented_channels=("email", "sms", "push") if customer % 2 else ("email",),
        timezone="Europe/Paris",
    )


START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)
SPAN = dt.timedelta(days=6)


def run_load(store_url: str, *, cluster: bool = False, workdir: Path, servers: int = 4,
             clients: int = 8, requests: int = 20_000, customers: int = 500, budget: float = 1_500.0,
             redeem_share: float = 0.3, seed: int = 1, outage=None, outage_at: float = 0.4,
             down_seconds: float = 1.5, progress=None) -> dict:
    """Run the load and verify it; ``outage`` is a RedisServer to kill and restart mid-load."""
    load = LoadRun(store_url, cluster, workdir, servers, clients, requests, customers, budget, redeem_share,
                   seed, outage, outage_at, down_seconds, progress)
    elapsed = load.run()
    return load.result(elapsed)


def _peak_spend(rows: list[tuple[dt.datetime, int, bool]], window: dt.timedelta) -> int:
    """The most ever spent at once: redeemed incentives (paid for good) plus unredeemed ones
    still inside their attribution window, at each decision's time."""
    rows = sorted(rows)
    peak = 0
    for i, (t, _, _) in enumerate(rows):
        spend = sum(c for u, c, paid in rows[: i + 1] if paid or u + window > t)
        peak = max(peak, spend)
    return peak


class LoadRun:
    """One load test: servers started, clients driven (and Redis killed, if asked), servers
    stopped, logs and Redis's ledger checked. Arguments: see ``run_load``."""

    def __init__(self, store_url: str, cluster: bool, workdir: Path, servers: int, clients: int, requests: int,
                 customers: int, budget: float, redeem_share: float, seed: int, outage, outage_at: float,
                 down_seconds: float, progress):
        self.store_url, self.cluster, self.workdir, self.servers = store_url, cluster, workdir, servers
        self.requests, self.customers, self.redeem_share, self.seed = requests, customers, redeem_share, seed
        self.outage, self.outage_at, self.down_seconds, self.progress = outage, outage_at, down_seconds, progress
        workdir.mkdir(parents=True, exist_ok=True)
        self.catalog_path = load_test_catalog(workdir, budget)
        self.catalog = load_catalog(self.catalog_path)
        self.costly = {o for o, offer in self.catalog.offers.items() if offer.cost > 0}
        self.prefix = f"load{seed}"
        self.stats = [ClientStats() for _ in range(clients)]
        self.ports: list[int] = []
        self.outage_log: dict[str, float] = {}
        self._next_index = iter(range(requests))
        self._lock = threading.Lock()
        self._done = 0

    def run(self) -> float:
        """Start the servers, drive the clients, stop the servers; the load's seconds."""
        extra = ["--catalog", str(self.catalog_path), "--redis", self.store_url, "--redis-prefix", self.prefix,
                 "--max-calls", "16", "--max-streams", "4", "--honour-decision-time"] + (["--redis-cluster"] if self.cluster else [])
        procs = []
        try:
            for i in range(self.servers):
                proc, port = start_server_process(self.workdir / f"logs-{i}", seed=self.seed * 100 + i, extra=extra)
                procs.append(proc)
                self.ports.append(port)
            # Keep the servers' output flowing so that a full pipe never blocks them.
            for proc in procs:
                threading.Thread(target=lambda p=proc: [None for _ in p.stdout], daemon=True).start()
            started = time.perf_counter()
            threads = [threading.Thread(target=self._client, args=(k,)) for k in range(len(self.stats))]
            if self.outage is not None:
                threads.append(threading.Thread(target=self._chaos))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - started
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except Exception:  # noqa: BLE001
                    proc.kill()

    def _client(self, k: int) -> None:
        """One client: takes the next request index until none is left, asks a server round
        robin, reports a share of the incentives redeemed."""
        rng = np.random.default_rng([self.seed, k])
        conns = [NBAClient(f"127.0.0.1:{port}", timeout=10) for port in self.ports]
        for c in conns:
            c.wait_ready(30)
        s = self.stats[k]
        try:
            while (i := self._take()) is not None:
                req = dataclasses.replace(request_for(int(rng.integers(self.customers))),
                                          decision_time=START + SPAN * (i / self.requests))
                started = time.perf_counter()
                try:
                    d = conns[i % self.servers].decide(req)
                except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
                    code = getattr(exc, "code", lambda: None)()
                    s.errors[str(code or type(exc).__name__)] += 1
                    continue
                finally:
                    s.calls += 1
                s.record(d, (time.perf_counter() - started) * 1000)
                if d.action.offer_id in self.costly and rng.random() < self.redeem_share:
                    self._redeem(conns[int(rng.integers(self.servers))], d, s)
                with self._lock:
                    self._done += 1
                    if self.progress:
                        self.progress(1)
        finally:
            for c in conns:
                c.close()

    def _take(self) -> int | None:
        with self._lock:
            return next(self._next_index, None)

    @staticmethod
    def _redeem(conn: NBAClient, d, s: ClientStats) -> None:
        """Report a redemption the way a channel system would: retried while the state store is
        unavailable (status UNAVAILABLE), for up to 10 s."""
        for _ in range(50):
            try:
                conn.report_outcome(d.event_id, "redeemed", "REDEEMED", time=d.decision_time)
                s.redeemed.append(d.event_id)
                return
            except Exception as exc:  # noqa: BLE001
                code = getattr(exc, "code", lambda: None)()
                if str(code) != "StatusCode.UNAVAILABLE":
                    s.errors[f"ReportOutcome {code or type(exc).__name__}"] += 1
                    return
                s.outcome_retries += 1
                time.sleep(0.2)
        s.errors["ReportOutcome gave up"] += 1

    def _chaos(self) -> None:
        """Kill Redis once ``outage_at`` of the requests are done; restart it ``down_seconds`` later."""
        while self._done < self.outage_at * self.requests:
            time.sleep(0.01)
        self.outage_log["killed"] = time.monotonic()
        self.outage.kill()
        time.sleep(self.down_seconds)
        self.outage.start()
        self.outage_log["restarted"] = time.monotonic()

    def _redis_ledger(self, keys: list) -> dict[str, dict[str, int]]:
        from engine.redis_store import RedisStateStore

        store = RedisStateStore(self.store_url, cluster=self.cluster, prefix=self.prefix)
        try:
            return {u.key.name: {"paid_cents": u.paid_cents, "committed_cents": u.committed_cents}
                    for u in store.budget_usage(keys)}
        finally:
            store.close()

    def result(self, elapsed: float) -> dict:
        """What the clients saw, what the logs replay to, and whether Redis's ledger agrees."""
        stats = self.stats
        redeemed = {e for s in stats for e in s.redeemed}
        replay = verify_logs([self.workdir / f"logs-{i}" for i in range(self.servers)], self.catalog, redeemed)
        ledger = self._redis_ledger(replay["budget_keys"])
        # Redis must hold what the logs show: the same redemptions, and at least the commitments
        # (a reply lost when Redis is killed mid-script leaves a commitment no decision used --
        # cautious, never an overspend); and never more than the amount.
        consistent = all(
            ledger.get(name, {}).get("paid_cents") == b["paid_cents"]
            and b["committed_cents"] <= sum(ledger.get(name, {}).values()) <= b["amount_cents"]
            for name, b in replay["budgets"].items())
        latencies = np.concatenate([np.asarray(s.latencies_ms) for s in stats if s.latencies_ms])
        errors: dict[str, int] = defaultdict(int)
        for s in stats:
            for code, n in s.errors.items():
                errors[code] += n
        result = {
            "servers": self.servers, "clients": len(stats), "requests": self.requests, "customers": self.customers,
            "seconds": elapsed, "requests_per_second": self.requests / elapsed,
            "calls": sum(s.calls for s in stats), "errors": dict(errors),
            "fallback_decisions": sum(s.fallback for s in stats),
            "contacts_seen_by_clients": sum(s.contacts for s in stats),
            "decisions_with_budget_exclusion": sum(s.budget_exclusions for s in stats),
            "decisions_with_pressure_exclusion": sum(s.pressure_exclusions for s in stats),
            "latency_p50_ms": float(np.percentile(latencies, 50)),
            "latency_p99_ms": float(np.percentile(latencies, 99)),
            "redis_ledger": ledger, "ledger_consistent": consistent, "redeemed_reported": len(redeemed),
            "outcome_retries": sum(s.outcome_retries for s in stats),
            **{k: v for k, v in replay.items() if k != "budget_keys"},
        }
        if self.outage is not None and "restarted" in self.outage_log:
            result.update(self._recovery())
        return result

    def _recovery(self) -> dict:
        """How long Redis was down and how soon normal decisions came back after its restart."""
        timeline = sorted(t for s in self.stats for t in s.timeline)
        after = [t for t, fb in timeline if t >= self.outage_log["restarted"] and not fb]
        return {"outage_seconds": self.outage_log["restarted"] - self.outage_log["killed"],
                "recovery_seconds": (after[0] - self.outage_log["restarted"]) if after else None,
                "fallback_after_recovery": sum(1 for t, fb in timeline if fb and after and t > after[0] + 0.5)}


def verify_logs(log_dirs: list[Path], catalog: Catalog, redeemed: set[str] = frozenset(),
                released: bool = False) -> dict:
    """Replay decision logs: cap and gap violations over exact sliding windows, and incentives
    committed per budget period (and the redeemed part of them) against the amount.

    ``released``: decisions matured during the run (their unredeemed commitments went back to
    the budget when their attribution window closed, redemptions being reported at decision
    time). The budget check is then on the peak spend -- what was paid plus what was still
    committed -- at each decision, instead of on every commitment ever made."""
    contacts: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
    committed: dict[str, int] = defaultdict(int)
    paid: dict[str, int] = defaultdict(int)
    spends: dict[str, list[tuple[dt.datetime, int, bool]]] = defaultdict(list)
    decisions = fallback = 0
    for directory in log_dirs:
        for path in log_files(directory, "decisions"):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("fallback"):
                    fallback += 1
                    continue
                decisions += 1
                meta = record["_nba"]
                action = meta["action"]
                if action["no_contact"]:
                    continue
                if not catalog.channels[action["channel"]].inbound_only:
                    at = dt.datetime.fromisoformat(action["send_at"].replace("Z", "+00:00"))
                    contacts[meta["customer_id"]].append((at, action["channel"]))
                if "budget" in meta:
                    cents = round(meta["offer_cost"] * 100)
                    committed[meta["budget"]] += cents
                    if record["EventId"] in redeemed:
                        paid[meta["budget"]] += cents
                    at = dt.datetime.fromisoformat(meta["decision_time"].replace("Z", "+00:00"))
                    spends[meta["budget"]].append((at, cents, record["EventId"] in redeemed))
    pressure = catalog.constraints.pressure
    cap_violations = gap_violations = 0
    for rows in contacts.values():
        rows.sort()
        times = [t for t, _ in rows]
        gap_violations += sum(1 for a, b in zip(times, times[1:]) if b - a < pressure.min_gap)
        for cap in pressure.caps:
            capped = [t for t, ch in rows if ch in cap.channels]
            for i, t in enumerate(capped):
                if sum(1 for u in capped[i:] if u < t + cap.window) > cap.max_contacts:
                    cap_violations += 1
    from engine.constraints import BudgetKey

    budgets = {}
    keys = []
    for name, cents in committed.items():
        budget_id, period = name.rsplit(":", 1)
        budget = next(b for b in catalog.constraints.budgets if b.id == budget_id)
        keys.append(BudgetKey(budget_id, int(period), budget.amount_cents))
        peak = _peak_spend(spends[name], catalog.attribution_window) if released else cents
        budgets[name] = {"committed_cents": cents, "paid_cents": paid[name], "peak_spend_cents": peak,
                         "amount_cents": budget.amount_cents, "overspent": peak > budget.amount_cents}
    return {"decisions_logged": decisions, "fallback_logged": fallback,
            "contacts_logged": sum(len(r) for r in contacts.values()),
            "customers_contacted": len(contacts), "cap_violations": cap_violations,
            "gap_violations": gap_violations, "budgets": budgets, "budget_keys": keys}
