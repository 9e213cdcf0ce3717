"""The engine's decisions and log lines, pinned: the same seed, model and requests give the same
bytes. A change meant to make the engine faster must leave this hash as it is; a change meant to
decide differently updates it, and says so in its commit."""

from __future__ import annotations

import datetime as dt
import hashlib

from engine.catalog import load_catalog
from engine.decision_log import log_files
from engine.domain import DecisionRequest, Outcome, OutcomeType
from engine.pipeline import DecisionEngine

T0 = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.timezone.utc)
ZONES = ("Europe/Paris", "Europe/London", "America/New_York", "Asia/Tokyo")
SEGMENTS = ("loyal", "occasional", "dormant", "new")
CONSENTS = (("email",), ("email", "sms"), ("email", "sms", "push"), ("sms",), ("email", "push", "web"))
# sha256 of the decisions and the log lines below, as made at commit be87772 (before the serving
# work cached feasibility, features, VW's parsed actions and the DSJSON text) and since.
GOLDEN = "7fa08ff964a820caa4fc0877c3c8e80bbb7ed6302ec7046c6b6e6b62e91afaef"


def requests():
    for i in range(400):
        yield DecisionRequest(
            customer_id=f"g{i % 150}", numeric_features={"basket": float(20 + (i * 37) % 90),
                                                         "opens_30d": float(i % 7)},
            categorical_features={"segment": SEGMENTS[i % 4]}, consented_channels=CONSENTS[i % 5],
            timezone=ZONES[i % 4], decision_time=T0 + dt.timedelta(minutes=53 * i), inbound=False)


def run(log_dir) -> str:
    engine = DecisionEngine(load_catalog(), log_dir=log_dir, seed=11, honour_request_time=True)
    digest = hashlib.sha256()
    for i, request in enumerate(requests()):
        d = engine.decide(request)
        digest.update(repr((d.event_id, d.action, d.probability, d.expected_value, d.explored,
                            [(r.action.label, r.expected_value, r.probability) for r in d.ranking],
                            [(e.target, e.reason.value) for e in d.exclusions])).encode())
        if not d.action.no_contact and i % 3 == 0:
            engine.report_outcome(Outcome(d.event_id, f"o{i}", OutcomeType.OPENED, 0.0, request.decision_time))
            if i % 9 == 0:
                engine.report_outcome(Outcome(d.event_id, f"b{i}", OutcomeType.CONVERTED, 40.0 + i % 50,
                                              request.decision_time))
    engine.mature(T0 + dt.timedelta(days=40))
    digest.update(repr(engine.model.updates).encode())
    engine.close()
    for prefix in ("decisions", "outcomes"):
        for f in log_files(log_dir, prefix):
            digest.update(f.read_bytes())
    return digest.hexdigest()


def test_the_same_seed_and_requests_give_the_same_decisions_and_log_lines(tmp_path):
    assert run(tmp_path / "logs") == GOLDEN
