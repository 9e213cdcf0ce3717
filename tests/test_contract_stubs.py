"""The committed gRPC stubs match a fresh generation from proto/ (run `make proto` if not)."""

from harness.protogen import REPO, generate


def test_stubs_are_not_stale(tmp_path):
    fresh = generate(tmp_path)
    assert fresh, "no stubs generated"
    for path in fresh:
        committed = REPO / "nba" / "v1" / path.name
        assert committed.exists(), f"{committed} missing: run `make proto`"
        assert committed.read_bytes() == path.read_bytes(), f"{committed.name} is stale: run `make proto`"


def test_every_proto_field_is_documented():
    """Each field and enum value line is preceded by a comment line (or the message is tiny)."""
    text = (REPO / "proto" / "nba" / "v1" / "decision.proto").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(text):
        stripped = line.strip()
        is_field = ("=" in stripped and stripped.endswith(";") and not stripped.startswith(("//", "syntax", "package", "option")))
        if is_field and "UNSPECIFIED" not in stripped:
            previous = text[i - 1].strip()
            if not previous.startswith("//"):
                undocumented.append(stripped)
    # Self-explanatory fields (echoes, counters, ack ids) are listed here explicitly.
    allowed = {
        "Action action = 1;", "double expected_value = 2;", "double probability = 3;",
        "string target = 1;", "ExclusionReason reason = 2;", "string event_id = 1;",
        "string outcome_id = 2;", "int64 decisions = 1;", "int64 explored = 2;",
        "int64 no_contact = 3;", "int64 outcomes = 4;", "int64 duplicate_outcomes = 5;",
        "ExplorationSettings exploration = 3;", "PolicyCounters counters = 4;",
        "DELIVERED = 1;", "OPENED = 2;", "CLICKED = 3;", "UNSUBSCRIBED = 5;", "COMPLAINED = 6;",
    }
    assert [f for f in undocumented if f not in allowed] == []
