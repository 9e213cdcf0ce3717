"""Prometheus metrics, scraped over HTTP from real servers (one process, and --processes 2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import socket
import subprocess
import sys
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import T0, request, serve_processes

from engine.client import NBAClient
from engine.domain import OutcomeType
from engine.guards import ServerLimits
from engine.metrics import Metrics
from engine.pipeline import DecisionEngine
from engine.server import start_server


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.fixture
def served(catalog, tmp_path):
    engine = DecisionEngine(catalog, log_dir=tmp_path / "logs", seed=3, honour_request_time=True)
    running = start_server(engine, port=0, limits=ServerLimits(max_calls=8, max_streams=4),
                           metrics=Metrics(refresh_seconds=0.2), metrics_port=0)
    yield running, f"http://127.0.0.1:{running.metrics_http.server_port}/metrics"
    running.stop(grace=2)


def test_a_scrape_counts_what_the_server_did(served):
    running, url = served
    with NBAClient(f"127.0.0.1:{running.port}") as client:
        decisions = [client.decide(request(f"c{i}", T0 + dt.timedelta(minutes=i))) for i in range(12)]
        streamed = list(client.decide_many([request(f"s{i}", T0 + dt.timedelta(hours=1, minutes=i)) for i in range(5)]))
        contacted = [d for d in decisions if not d.action.no_contact]
        client.report_outcome(contacted[0].event_id, "o1", "OPENED", time=T0 + dt.timedelta(hours=2))
        client.report_outcome(contacted[0].event_id, "o1", "OPENED", time=T0 + dt.timedelta(hours=2))  # duplicate
        client.report_outcome(contacted[0].event_id, "c1", "CLICKED", time=T0 + dt.timedelta(hours=2))
        with pytest.raises(grpc.RpcError) as bad:
            client.decide(dataclasses.replace(request("x", T0), customer_id=""))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    running.metrics.refresh(running.engine)
    m = scrape(url)
    made = decisions + streamed
    assert total(m, "nba_decisions_total") == len(made)
    for d in made:
        channel = "none" if d.action.no_contact else d.action.channel
        offer = "none" if d.action.no_contact else d.action.offer_id
        same = [e for e in made if e.action.no_contact == d.action.no_contact and
                (e.action.no_contact or (e.action.channel, e.action.offer_id) == (channel, offer))]
        assert total(m, "nba_decisions_total", channel=channel, offer=offer) == len(same)
    assert total(m, "nba_decisions_total", explored="yes") == sum(d.explored for d in made)
    reasons: dict[str, int] = {}
    for d in made:
        for e in d.exclusions:
            reasons[e.reason.value] = reasons.get(e.reason.value, 0) + 1
    assert reasons and all(total(m, "nba_exclusions_total", reason=r) == n for r, n in reasons.items())
    assert total(m, "nba_outcomes_total", type=OutcomeType.OPENED.value) == 1  # the duplicate is not counted
    assert total(m, "nba_outcomes_total", type=OutcomeType.CLICKED.value) == 1
    assert total(m, "nba_rpc_seconds_count", rpc="NextBestAction") == 13  # 12 decided, 1 refused
    assert total(m, "nba_rpc_seconds_count", rpc="NextBestActions") == 5
    assert total(m, "nba_rpc_seconds_count", rpc="ReportOutcome") == 3
    assert total(m, "nba_rpc_errors_total", rpc="NextBestAction", code="INVALID_ARGUMENT") == 1
    assert total(m, "nba_pending_decisions") == len(made)
    assert total(m, "nba_engine_events_total", event="rejected") == 1
    assert total(m, "nba_model_info", version=running.engine.model.version) == 1
    committed = sum(b.usage.committed_cents for b in running.engine.policy().budgets) / 100
    assert total(m, "nba_budget_committed_eur") == pytest.approx(committed)
    assert total(m, "nba_budget_plan_eur") > 0


def test_a_taken_metrics_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--metrics-port", str(port),
                              "--state-dir", str(tmp_path / "state"), "--log-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in run.stderr


@pytest.mark.slow
def test_the_parent_of_several_processes_serves_their_sum(tmp_path, redis_server):
    proc, port, line = serve_processes(tmp_path, redis_server.url, "--metrics-port", "0")
    try:
        url = re.search(r"metrics on (http://\S+/metrics)", line).group(1)
        clients = [NBAClient(f"127.0.0.1:{port}") for _ in range(16)]
        for k, client in enumerate(clients):
            for i in range(3):
                client.decide(request(f"c{k}-{i}", T0 + dt.timedelta(minutes=i)))
            client.close()
        m = scrape(url)
        assert total(m, "nba_decisions_total") == 48
        assert total(m, "nba_rpc_seconds_count", rpc="NextBestAction") == 48
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        assert len(set(re.findall(r'nba_model_updates\{pid="(\d+)"\}', text))) == 2  # one series a process
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
