import json
import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).with_name("reflection_client.py")


def test_reflection_only_client_gets_decision_outcome_and_invalid_argument(server):
    out = subprocess.run([sys.executable, str(CLIENT), f"127.0.0.1:{server.port}"],
                         capture_output=True, text=True, timeout=60, cwd=CLIENT.parent)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert "nba.v1.DecisionService" in seen["services"]
    assert seen["methods"] == ["NextBestAction", "NextBestActions", "ReportOutcome", "GetPolicy", "ReloadPolicy",
                               "ForgetCustomer"]
    assert seen["decision"]["code"] == "OK"
    event_id = seen["decision"]["reply"]["decision"]["eventId"]
    assert event_id and seen["decision"]["reply"]["decision"]["currencyCode"] == "EUR"
    assert seen["outcome"] == {"code": "OK", "reply": {"eventId": event_id, "outcomeId": "o-1"}}
    assert seen["empty"]["code"] == "INVALID_ARGUMENT"
    assert seen["empty"]["details"] == "customer_id: must not be empty"
    assert {"nba.v1.DecisionService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
            "grpc.reflection.v1.ServerReflection"} <= set(seen["v1_services"])
    # The stubs really were not used by the client process.
    assert "import nba" not in CLIENT.read_text() and "from nba" not in CLIENT.read_text()
