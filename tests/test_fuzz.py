"""10 000 malformed and random calls to every RPC of a real `nba serve` (its embedded SQLite
store, then Redis): only documented status codes, nothing logged for a rejected call, the server
healthy after, its memory bounded."""

from __future__ import annotations

import pytest

from harness.fuzz import Fuzzer
from harness.processes import ServerProcess

pytestmark = pytest.mark.slow
DOCUMENTED = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def lines(directory, prefix: str) -> int:
    return sum(1 for p in directory.glob(f"{prefix}-*.jsonl") for _ in p.open())


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_ten_thousand_hostile_calls_get_documented_answers_only(backend, tmp_path, request):
    extra = ["--honour-decision-time"]
    if backend == "redis":
        extra += ["--redis", request.getfixturevalue("redis_server").url, "--redis-prefix", "fuzz"]
    server = ServerProcess(tmp_path / "logs", seed=1, extra=extra)
    try:
        warm = Fuzzer(server.target, seed=99)
        warm.run(300)
        before = rss_mb(server.proc.pid)
        fuzzer = Fuzzer(server.target, seed=1)
        report = fuzzer.run(10_000)
        after = rss_mb(server.proc.pid)
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(fuzzer.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        fuzzer.close()
        warm.close()
    finally:
        assert server.stop() == 0
    print(f"\n{backend}: {sum(report.codes.values()):,} calls, {dict(report.codes)}; RSS {before:.0f} -> {after:.0f} MB")
    assert sum(report.codes.values()) == 10_000
    assert set(report.codes) <= DOCUMENTED, report.by_kind
    assert report.codes["OK"] > 1_000 and report.codes["INVALID_ARGUMENT"] > 3_000
    assert not server.said("Traceback") and not server.said("internal error")
    decided = report.decisions_ok + warm.report.decisions_ok
    reported = report.outcomes_ok + warm.report.outcomes_ok
    assert lines(tmp_path / "logs", "decisions") == decided      # nothing logged for a rejected call
    assert lines(tmp_path / "logs", "outcomes") == reported
    assert after - before < 150, f"RSS grew by {after - before:.0f} MB"
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "logs").glob("*.jsonl")}
    assert modes == {"0o640"}  # finding 6: logs were world-readable
