"""A client generated from the .proto alone (tests/proto_only_client.py, in a process of its
own) calls every RPC against a real server, and a campaign stream with bad records scattered
through it gets each bad record's error -- position, code, field violations -- and goes on."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_tools import protoc

from harness.protogen import PROTO_ROOT, include_dirs

CLIENT = Path(__file__).with_name("proto_only_client.py")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    """protoc's Python stubs for decision.proto alone, in a package of the client's own."""
    root = tmp_path_factory.mktemp("contract")
    (root / "src" / "nbacontract").mkdir(parents=True)
    shutil.copy(PROTO_ROOT / "nba" / "v1" / "decision.proto", root / "src" / "nbacontract" / "decision.proto")
    out = root / "out"
    out.mkdir()
    rc = protoc.main(["protoc", f"-I{root / 'src'}", *(f"-I{d}" for d in include_dirs()),
                      f"--python_out={out}", f"--grpc_python_out={out}", "nbacontract/decision.proto"])
    assert rc == 0
    return out


def run_client(stubs: Path, port: int, n: int, bad_every: int) -> dict:
    out = subprocess.run([sys.executable, str(CLIENT), str(stubs), f"127.0.0.1:{port}", str(n), str(bad_every)],
                         capture_output=True, text=True, timeout=900, cwd=stubs)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def check(seen: dict, n: int, bad: int) -> None:
    assert seen["unary"]["event_id"] and seen["unary"]["currency"] == "EUR" and seen["unary"]["typed_targets"]
    assert "EXCLUSION_REASON_INBOUND_ONLY" in seen["unary"]["exclusions"]
    assert seen["unary_bad"]["grpc_code"] == "INVALID_ARGUMENT"
    assert seen["unary_bad"]["violations"] == [["timezone", "unknown IANA time zone 'Mars/Olympus' (e.g. 'Europe/Paris')"]]
    assert seen["unary_bad"]["reason"] == "ERROR_REASON_INVALID_FIELD" and seen["unary_bad"]["domain"] == "nba.v1"
    assert seen["outcome"] == {"event_id": True, "duplicate": False}
    assert seen["outcome_unknown"]["grpc_code"] == "NOT_FOUND"
    assert seen["outcome_unknown"]["reason"] == "ERROR_REASON_EVENT_NOT_FOUND"
    assert seen["policy"]["currency"] == "EUR" and seen["policy"]["decisions"] >= 1
    assert seen["policy"]["algorithm"] == "EXPLORATION_ALGORITHM_EPSILON_GREEDY"
    assert seen["reload"]["grpc_code"] == "FAILED_PRECONDITION" and seen["reload"]["reason"] == "ERROR_REASON_NO_MODEL_URI"
    assert seen["forget"] == {"known": True, "pending_deleted": 1, "currency": "EUR"}
    stream = seen["stream"]
    assert stream["answers"] == n and stream["in_order"]
    assert (stream["decisions"], stream["errors"]) == (n - bad, bad)
    assert stream["errors_where_bad"] and stream["wrong"] == []
    first = stream["first_error"]
    assert first["code"] == 3 and first["violations"][0][0] == "customer_id"
    assert first["request_id"] == f"r{first['position']}"


def test_a_client_from_the_proto_alone_calls_every_rpc_and_a_stream_survives_bad_records(stubs, server):
    check(run_client(stubs, server.port, 500, 100), 500, 5)
    assert "from engine" not in CLIENT.read_text() and "import nba" not in CLIENT.read_text()


@pytest.mark.slow
def test_a_ten_thousand_request_stream_with_a_hundred_bad_records(stubs, server):
    check(run_client(stubs, server.port, 10_000, 100), 10_000, 100)
