"""``nba serve --processes N``: processes sharing one port and one Redis, one learner whose
checkpoints the others serve (real processes, a real redis-server of the tests' own)."""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from support import T0, request, serve_processes

from engine.catalog import load_catalog
from engine.checkpoint import ModelCheckpoint
from engine.client import NBAClient
from engine.domain import Outcome, OutcomeType
from engine.pipeline import DecisionEngine


def serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_more_than_one_process_needs_redis_and_nothing_is_started(tmp_path):
    run = serve("--processes", "2", "--state-dir", str(tmp_path / "state"), "--log-dir", str(tmp_path / "logs"))
    assert run.returncode == 2
    assert "--processes 2 needs --redis" in run.stderr and "SQLite" in run.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "logs").exists()
    run = serve("--processes", "0", "--state-dir", str(tmp_path / "state"))
    assert run.returncode == 2 and "--processes must be >= 1, got 0" in run.stderr


def test_a_follower_serves_the_learners_checkpoint_and_saves_nothing(tmp_path):
    catalog = load_catalog()
    learner = DecisionEngine(catalog, seed=1, honour_request_time=True)
    follower = DecisionEngine(catalog, seed=2, honour_request_time=True)
    follower.learns = False
    saving = ModelCheckpoint(tmp_path, learner)
    following = ModelCheckpoint(tmp_path, follower, follow=True)
    assert not following.resume()  # nothing saved yet
    for i in range(20):
        d = learner.decide(request(f"c{i}", T0))
        learner.report_outcome(Outcome(d.event_id, "b", OutcomeType.CONVERTED, 50.0, T0))
    assert follower.mature(T0 + catalog.attribution_window) == 0  # not the learner
    assert learner.mature(T0 + catalog.attribution_window) == 20 and saving.save()
    assert following.resume() and follower.model.updates == learner.model.updates == 20
    assert not following.resume()  # the same checkpoint: not loaded twice
    probe = request("probe", T0 + catalog.attribution_window)
    ranked = lambda e: [(r.action.label, round(r.expected_value, 9)) for r in e.decide(probe).ranking]  # noqa: E731
    assert ranked(follower) == ranked(learner)
    before = (tmp_path / "model-checkpoint.json").read_bytes()
    assert not following.save()
    following.stop()
    assert (tmp_path / "model-checkpoint.json").read_bytes() == before


def _pids(line: str) -> list[int]:
    return [int(p) for p in re.search(r"pids ([\d ]+);", line).group(1).split()]


@pytest.mark.slow
def test_processes_share_the_port_and_the_state_and_stop_together(tmp_path, redis_server):
    proc, port, line = serve_processes(tmp_path, redis_server.url)
    try:
        children = _pids(line)
        assert len(children) == 2 and all(os.path.exists(f"/proc/{pid}") for pid in children)
        clients = [NBAClient(f"127.0.0.1:{port}") for _ in range(16)]  # 16 connections: both processes get some
        contacts: collections.Counter[str] = collections.Counter()
        for k, client in enumerate(clients):
            for i in range(10):  # the same ten customers through every connection, at the same time
                d = client.decide(dataclasses.replace(request(f"c{i}", T0), consented_channels=("email", "sms")))
                contacts[f"c{i}"] += not d.action.no_contact
        # One store: the 24-hour minimum gap lets each customer be contacted once, whichever
        # process decided (each process on its own would let each contact them once).
        assert max(contacts.values()) == 1
        pids = {f.name.split("-")[2] for f in (tmp_path / "logs").glob("decisions-*.jsonl")}
        assert pids == {str(pid) for pid in children}
        for client in clients:
            client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not any(os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid) for pid in children)


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/status").read().lower()
    except OSError:
        return "zombie"


@pytest.mark.slow
def test_when_one_process_dies_the_others_are_stopped_and_the_exit_says_so(tmp_path, redis_server):
    proc, _, line = serve_processes(tmp_path, redis_server.url)
    children = _pids(line)
    os.kill(children[1], signal.SIGKILL)
    try:
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    rest = proc.stdout.read()
    assert "nba-serve-1" in rest and "stopping the others" in rest
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{children[0]}") and "zombie" not in _state(children[0]):
        assert time.monotonic() < deadline, "the other process still runs"
        time.sleep(0.1)
