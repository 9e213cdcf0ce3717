"""Serving at campaign scale: `nba serve` against a no-op and a floor gRPC server, alternately, fresh servers.

The references (bench/noop_server.py) have the same gRPC options. The no-op answers a constant
Decision of the same shape: what gRPC and protobuf cost. The floor (``--floor``) does per request
only what no decision service of this design can skip -- VW input, one VW prediction of the
default catalog's actions, one SQLite transaction, one log line, the response -- a lower bound on
what `nba serve` can cost. Each round starts one of each, measures it, stops it, then `nba serve`
(embedded SQLite state, --honour-decision-time, decision times spread so that customers are new),
and prints each figure and its ratio to the no-op's:

  * unary, one client: p50 latency, and the server's CPU per decision (/proc utime + stime);
  * 32 calls in flight (32 client threads over 4 connections): requests a second;
  * one stream, and four streams at once (a connection each): decisions a second.

The client is the project's own (engine.client.NBAClient), as a Python channel system would
call, on the same machine: its CPU is taken from the server's.

Then, once each: `nba serve --processes 2 --redis` (four streams, 32 in flight), a catalog of
~500 feasible actions (unary p50), and memory: RSS over a long run whose pending decisions stop
growing after the attribution window, and Redis's MEMORY USAGE per pending decision.

    .venv/bin/python bench/serving.py                  # everything (~20 minutes on 2 cores)
    .venv/bin/python bench/serving.py --only pairs     # pairs | processes | actions | memory
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.client import NBAClient  # noqa: E402

START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)
TICK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 4  # client connections of the 32-in-flight runs


def requests(n: int, first: int = 0, start: dt.datetime = START, span: dt.timedelta = dt.timedelta(hours=1)):
    """``n`` requests for distinct customers, decision times spread over ``span`` from ``start``."""
    import dataclasses

    from bench.latency import make_request

    return [dataclasses.replace(make_request(i), customer_id=f"bench-{i}", decision_time=start + span * ((i - first) / n))
            for i in range(first, first + n)]


class Server:
    """A server process on a free port, stopped by ``stop``."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"serving nba\.v1\.DecisionService on [^:]+:(\d+)", line)
            if match:
                self.target = f"127.0.0.1:{match.group(1)}"
                break
        else:
            raise RuntimeError("server did not start:\n" + "".join(self.lines[-10:]))
        import threading

        threading.Thread(target=lambda: [self.lines.append(x) for x in self.proc.stdout], daemon=True).start()

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children (``--processes``)."""
        total = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICK
            except (OSError, IndexError):
                pass
        return total

    def rss_mb(self) -> float:
        return sum(_rss(pid) for pid in [self.proc.pid, *_children(self.proc.pid)]) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss(pid: int) -> int:
    try:
        return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0


def noop(floor: bool = False) -> Server:
    return Server([sys.executable, "bench/noop_server.py", *(["--floor"] if floor else [])])


def nba(tmp: Path, *extra: str) -> Server:
    return Server([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--log-dir", str(tmp / "logs"),
                   "--state-dir", str(tmp / "state"), "--honour-decision-time", "--seed", "1",
                   "--max-streams", "8", *extra])


# -- measurements ------------------------------------------------------------------------------


def unary(server: Server, calls: int) -> dict:
    with NBAClient(server.target, timeout=10) as client:
        for r in requests(200, first=10_000_000):
            client.decide(r)
        batch = requests(calls)
        cpu, times = server.cpu_seconds(), []
        for r in batch:
            t = time.perf_counter()
            client.decide(r)
            times.append(time.perf_counter() - t)
        cpu = server.cpu_seconds() - cpu
    return {"p50_ms": statistics.median(times) * 1000, "cpu_ms": cpu / calls * 1000}


def _in_flight(target: str, calls: int, concurrency: int, connections: int = CONNECTIONS) -> float:
    """Requests a second with ``concurrency`` client threads, each calling one after the other,
    over ``connections`` connections (what the kernel spreads over ``--processes``)."""
    import threading

    batch = requests(calls, first=20_000_000)
    lock = threading.Lock()
    clients = [NBAClient(target, timeout=30) for _ in range(connections)]
    try:
        def worker(client):
            while True:
                with lock:
                    if not batch:
                        return
                    r = batch.pop()
                client.decide(r)
        threads = [threading.Thread(target=worker, args=(clients[k % connections],)) for k in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return calls / (time.perf_counter() - started)
    finally:
        for c in clients:
            c.close()


def _streams(target: str, per_stream: int, n: int) -> float:
    """Decisions a second over ``n`` streams at once, one client thread and connection each
    (decide_many)."""
    import threading

    counts = [0] * n
    batches = [requests(per_stream, first=30_000_000 + k * 1_000_000) for k in range(n)]

    def one(k: int) -> None:
        with NBAClient(target) as client:
            counts[k] = sum(1 for _ in client.decide_many(batches[k], timeout=3600))
    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def measure(server: Server, calls: int, stream: int) -> dict:
    result = unary(server, calls)
    result["in_flight_rps"] = _in_flight(server.target, calls, 32)
    result["stream_dps"] = _streams(server.target, stream, 1)
    result["streams4_dps"] = _streams(server.target, stream // 2, 4)
    return result


def pairs(rounds: int, calls: int, stream: int) -> dict:
    rows = []
    for r in range(rounds):
        row = {}
        for name, floor in (("noop", False), ("floor", True)):
            ref = noop(floor)
            try:
                row[name] = measure(ref, calls, stream)
            finally:
                ref.stop()
        with tempfile.TemporaryDirectory() as tmp:
            srv = nba(Path(tmp))
            try:
                row["nba"] = measure(srv, calls, stream)
            finally:
                srv.stop()
        rows.append(row)
        a, f, b = row["noop"], row["floor"], row["nba"]
        print(f"round {r + 1}: no-op / floor / nba serve: unary p50 {a['p50_ms']:.2f} / {f['p50_ms']:.2f} / "
              f"{b['p50_ms']:.2f} ms; server CPU per decision {a['cpu_ms']:.2f} / {f['cpu_ms']:.2f} / "
              f"{b['cpu_ms']:.2f} ms; 32 in flight {a['in_flight_rps']:,.0f} / {f['in_flight_rps']:,.0f} / "
              f"{b['in_flight_rps']:,.0f} req/s; one stream {a['stream_dps']:,.0f} / {f['stream_dps']:,.0f} / "
              f"{b['stream_dps']:,.0f} /s; four streams {a['streams4_dps']:,.0f} / {f['streams4_dps']:,.0f} / "
              f"{b['streams4_dps']:,.0f} /s", flush=True)
    medians = {key: {name: statistics.median(row[name][key] for row in rows) for name in rows[0]}
               for key in rows[0]["noop"]}
    print("\n| | no-op server | floor server | nba serve | floor / no-op | nba serve / no-op |"
          "\n|---|---:|---:|---:|---:|---:|")
    for key, title, unit in (("p50_ms", "unary, 1 client, p50", "ms"), ("cpu_ms", "server CPU per decision", "ms"),
                             ("in_flight_rps", "32 calls in flight", "req/s"),
                             ("stream_dps", f"one stream, {stream:,} requests", "/s"),
                             ("streams4_dps", "four streams", "/s")):
        a, f, b = (medians[key][name] for name in ("noop", "floor", "nba"))
        fmt = "{:.2f}" if unit == "ms" else "{:,.0f}"
        print(f"| {title} | {fmt.format(a)} {unit} | {fmt.format(f)} {unit} | {fmt.format(b)} {unit} "
              f"| {f / a:.2f}x | {b / a:.2f}x |")
    return medians


def processes(calls: int, stream: int) -> dict:
    from harness.redis_servers import RedisServer

    redis = RedisServer().start()
    try:
        results = {}
        for n in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                srv = nba(Path(tmp), "--redis", redis.url, "--redis-prefix", f"p{n}", "--processes", str(n))
                try:
                    results[n] = ((_streams(srv.target, stream // 2, 4)),
                                  (_in_flight(srv.target, calls, 32)))
                finally:
                    srv.stop()
        ref = noop()
        try:
            ref_rps = (_in_flight(ref.target, calls, 32))
        finally:
            ref.stop()
    finally:
        redis.stop()
    (s1, f1), (s2, f2) = results[1], results[2]
    print(f"\non Redis: four streams {s1:,.0f} /s with one process, {s2:,.0f} /s with --processes 2 "
          f"({s2 / s1:.2f}x); 32 in flight {f1:,.0f} / {f2:,.0f} req/s, the no-op's {ref_rps:,.0f} "
          f"({f2 / ref_rps:.2f}x of it with --processes 2)")
    return {"streams4": (s1, s2), "in_flight": (f1, f2, ref_rps)}


def many_actions(calls: int) -> dict:
    from engine.catalog import default_catalog_path

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = default_catalog_path().read_text()
        extra_offers = "".join(f'\n[offers.extra_{k}]\nname = "Extra {k}"\ncost = 0.0\n' for k in range(38))
        catalog = tmp / "large.toml"
        catalog.write_text(text.replace("# Channels:", extra_offers + "\n# Channels:", 1))
        srv = nba(tmp, "--catalog", str(catalog))
        try:
            with NBAClient(srv.target) as client:
                d = client.decide(requests(1, first=40_000_000)[0])
            r = unary(srv, calls)
        finally:
            srv.stop()
    print(f"\n{d.feasible_actions} feasible actions: unary p50 {r['p50_ms']:.2f} ms, server CPU "
          f"{r['cpu_ms']:.2f} ms per decision")
    return {"actions": d.feasible_actions, **r}


def memory(decisions: int) -> dict:
    """RSS of ``nba serve`` (embedded store) over ``decisions`` decisions spread over 14 simulated
    days: pending decisions grow for the 7-day window, then stay level (as many mature as are
    made). The slope over the first week is what a pending decision costs the process."""
    span = dt.timedelta(days=14)
    batch = 10_000
    with tempfile.TemporaryDirectory() as tmp:
        srv = nba(Path(tmp))
        points = []  # (decisions, pending, RSS MB)
        try:
            with NBAClient(srv.target) as client:
                for k in range(decisions // batch):
                    reqs = requests(batch, first=k * batch, start=START + span * (k * batch / decisions),
                                    span=span / (decisions // batch))
                    sum(1 for _ in client.decide_many(reqs, timeout=3600))
                    points.append(((k + 1) * batch, client.policy().counters.pending, srv.rss_mb()))
        finally:
            srv.stop()
    growing = [p for p in points if p[0] <= decisions / 2]
    (_, p0, r0), (_, p1, r1) = growing[1], growing[-1]  # from the second point: past the warm-up
    per_pending = (r1 - r0) * 2**20 / max(1, p1 - p0)
    half = [rss for n, _, rss in points if n > decisions / 2]
    spread = (max(half) - min(half)) / min(half)
    print(f"\nnba serve (embedded store), {decisions:,} decisions over 14 simulated days: RSS (MB) "
          + ", ".join(f"{rss:.0f}" for _, _, rss in points))
    print(f"pending decisions {', '.join(f'{p:,}' for _, p, _ in points)}")
    print(f"RSS per pending decision while they grow: {per_pending:,.0f} bytes; second half: {min(half):.0f}-"
          f"{max(half):.0f} MB ({spread:.1%} apart)")
    return {"process_bytes": per_pending, "rss_spread": spread, "rss_mb": (min(half), max(half))}


def redis_memory(decisions: int) -> dict:
    """What ``decisions`` pending decisions take in Redis: ``INFO memory`` before and after, and
    ``MEMORY USAGE`` of the pending decisions' own keys (their hash and their share of the
    maturity queue) -- the rest is the customers' state (contacts, counts, log token)."""
    import redis as redis_py

    from harness.redis_servers import RedisServer

    server = RedisServer().start()
    try:
        r = redis_py.Redis.from_url(server.url)
        with tempfile.TemporaryDirectory() as tmp:
            srv = nba(Path(tmp), "--redis", server.url)
            try:
                before = r.info("memory")["used_memory"]
                with NBAClient(srv.target) as client:
                    sum(1 for _ in client.decide_many(requests(decisions, first=50_000_000), timeout=3600))
                    pending = client.policy().counters.pending
                after = r.info("memory")["used_memory"]
                def mean_usage(pattern: str) -> float:
                    keys = [k for _, k in zip(range(1000), r.scan_iter(match=pattern, count=1000))]
                    return sum(r.memory_usage(k, samples=0) for k in keys) / max(1, len(keys))
                own, data = mean_usage("nba:{p}:e:*"), mean_usage("nba:{p}:d:*")
                queue = r.memory_usage("nba:{p}:queue", samples=0) / max(1, pending)
                per_set = mean_usage("nba:{c:*}:open")
            finally:
                srv.stop()
    finally:
        server.stop()
    total = (after - before) / max(1, pending)
    per_pending = own + data + queue + per_set
    print(f"\nRedis, {pending:,} pending decisions: {per_pending:,.0f} bytes each (MEMORY USAGE: hash {own:,.0f}, "
          f"data {data:,.0f}, queue entry {queue:,.0f}, the customer's open decisions {per_set:,.0f}); used_memory "
          f"grew {total:,.0f} bytes a decision, the customers' state (contacts, counts, log token) included")
    return {"redis_bytes": per_pending, "redis_total_bytes": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("pairs", "processes", "actions", "memory"), action="append")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--stream", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=200_000, help="decisions of the RSS run")
    parser.add_argument("--redis-decisions", type=int, default=20_000, help="decisions of the Redis memory run")
    args = parser.parse_args()
    what = args.only or ["pairs", "processes", "actions", "memory"]
    got: dict = {}
    if "pairs" in what:
        got["pairs"] = pairs(args.rounds, args.calls, args.stream)
    if "processes" in what:
        got["processes"] = processes(args.calls, args.stream)
    if "actions" in what:
        got["actions"] = many_actions(args.calls)
    if "memory" in what:
        got["memory"] = {**memory(args.decisions), **redis_memory(args.redis_decisions)}
    if len(got) == 4:
        print("\n" + summary(got))
    return 0


def summary(got: dict) -> str:
    """The figures against the targets of the serving work, as one markdown table."""
    p, m = got["pairs"], got["memory"]
    (s1, s2), (_, f2, ref) = got["processes"]["streams4"], got["processes"]["in_flight"]

    def ratio(key: str, server: str) -> float:
        return p[key][server] / p[key]["noop"]

    rows = [
        ("server CPU per decision (default catalog)",
         f"{p['cpu_ms']['nba']:.2f} ms (no-op {p['cpu_ms']['noop']:.2f}, floor {p['cpu_ms']['floor']:.2f})",
         "<= 0.7 ms", p["cpu_ms"]["nba"] <= 0.7),
        ("unary p50, one client", f"{p['p50_ms']['nba']:.2f} ms, {ratio('p50_ms', 'nba'):.2f}x the no-op's "
         f"(floor {ratio('p50_ms', 'floor'):.2f}x)", "<= 1.8x", ratio("p50_ms", "nba") <= 1.8),
        ("one stream", f"{p['stream_dps']['nba']:,.0f} /s, {ratio('stream_dps', 'nba'):.2f}x the no-op's "
         f"(floor {ratio('stream_dps', 'floor'):.2f}x)", ">= 0.5x", ratio("stream_dps", "nba") >= 0.5),
        ("four streams, --processes 2 on Redis", f"{s2:,.0f} /s, {s2 / s1:.2f}x one process's", ">= 1.6x",
         s2 / s1 >= 1.6),
        ("32 in flight, --processes 2 on Redis", f"{f2:,.0f} req/s, {f2 / ref:.2f}x the no-op's", ">= 0.5x",
         f2 / ref >= 0.5),
        (f"unary p50, {got['actions']['actions']} feasible actions", f"{got['actions']['p50_ms']:.2f} ms", "<= 3 ms",
         got["actions"]["p50_ms"] <= 3),
        ("memory per pending decision, in process (embedded store)", f"{m['process_bytes']:,.0f} bytes", "<= 1 KB",
         m["process_bytes"] <= 1024),
        ("memory per pending decision, in Redis", f"{m['redis_bytes']:,.0f} bytes", "<= 1 KB",
         m["redis_bytes"] <= 1024),
        ("RSS over the second half of the long run", f"{m['rss_mb'][0]:.0f}-{m['rss_mb'][1]:.0f} MB "
         f"({m['rss_spread']:.1%} apart)", "within 10 %", m["rss_spread"] <= 0.10),
    ]
    lines = ["| | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {target} | {'yes' if ok else '**no**'} |" for name, value, target, ok in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
