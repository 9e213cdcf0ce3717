"""The reference servers of bench/serving.py answer as the benchmark assumes: the no-op with one
constant decision, the floor with a decision of its own per request (its own event id, and the
value VW gives the chosen action), on unary calls and on a stream."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from engine.client import NBAClient
from engine.domain import DecisionRequest

ROOT = Path(__file__).resolve().parent.parent


def start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "bench/noop_server.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    said = []
    for line in proc.stdout:
        said.append(line)
        match = re.search(r"serving nba\.v1\.DecisionService on [^:]+:(\d+)", line)
        if match:
            return proc, f"127.0.0.1:{match.group(1)}"
    proc.kill()
    raise AssertionError("reference server did not start:\n" + "".join(said[-10:]))


def request(i: int) -> DecisionRequest:
    return DecisionRequest(customer_id=f"r-{i}", numeric_features={"basket": 40.0 + i},
                           categorical_features={"segment": "loyal"}, consented_channels=("email",),
                           timezone="Europe/Paris")


def answers(target: str) -> list:
    with NBAClient(target, timeout=30) as client:
        unary = [client.decide(request(i)) for i in range(3)]
        streamed = list(client.decide_many([request(i) for i in range(3, 6)], timeout=30))
    return unary + streamed


def test_the_noop_answers_one_constant_decision_and_the_floor_one_per_request():
    for floor in (False, True):
        proc, target = start(*(["--floor"] if floor else []))
        try:
            got = answers(target)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        ids = {d.event_id for d in got}
        assert len(got) == 6 and all(d.feasible_actions > 1 for d in got)
        if floor:
            assert len(ids) == 6  # a decision of its own per request
        else:
            assert len(ids) == 1
