import dataclasses
import datetime as dt
import json
import os

import pytest
import vowpal_wabbit_next as vw

from engine.catalog import load_catalog
from engine.client import NBAClient
from engine.decision_log import JsonlLog, log_files
from engine.domain import Outcome, OutcomeType
from engine.pipeline import DecisionEngine
from training.logs import ReadReport, joined_decisions
from support import T0, request


def test_rotation_by_size_keeps_every_line(tmp_path):
    log = JsonlLog(tmp_path, "decisions", max_bytes=2048)
    for i in range(200):
        log.append({"i": i, "pad": "x" * 50})
    log.close()
    files = log_files(tmp_path, "decisions")
    assert len(files) > 5
    assert all(f.stat().st_size <= 2048 for f in files)
    lines = [json.loads(line)["i"] for f in files for line in f.read_text().splitlines()]
    assert lines == list(range(200))


def test_each_start_opens_a_new_file(tmp_path):
    a = JsonlLog(tmp_path, "outcomes")
    a.append({"n": 1})
    a.close()
    b = JsonlLog(tmp_path, "outcomes")
    b._stamp = "29991231T235959"  # a later start
    b.append({"n": 2})
    b.close()
    assert len(log_files(tmp_path, "outcomes")) == 2


def test_server_log_parses_with_vw_dsjson_parser(engine, tmp_path, catalog):
    for i in range(20):
        engine.decide(request(f"c{i}", T0 + dt.timedelta(minutes=i)))
    ws = vw.Workspace(catalog.model.vw_args())
    parser = vw.DSJsonFormatParser(ws)
    for f in log_files(tmp_path / "logs", "decisions"):
        for line in f.read_text().splitlines():
            record = json.loads(line)
            examples = parser.parse_json(line)
            assert len(examples) == 1 + len(record["c"]["_multi"])  # shared + actions
            label = examples[1 + record["_labelIndex"]].get_label()
            assert label.label[2] == pytest.approx(record["_label_probability"], rel=1e-6)  # VW float32
            ws.learn_one(examples)


def test_crash_truncated_tail_is_skipped_not_fatal(engine, tmp_path, catalog):
    for i in range(10):
        engine.decide(request(f"c{i}", T0 + dt.timedelta(minutes=i)))
    engine.close()
    [path] = log_files(tmp_path / "logs", "decisions")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the process died mid-write of the last line
    report = ReadReport()
    records = list(joined_decisions(tmp_path / "logs", catalog, report))
    assert len(records) == 9
    assert report.skipped["truncated last line"] == 1


def test_corrupt_lines_counted(tmp_path, catalog):
    e = DecisionEngine(catalog, log_dir=tmp_path, seed=2, honour_request_time=True)
    e.decide(request())
    e.close()
    [path] = log_files(tmp_path, "decisions")
    good = path.read_text().splitlines()[0]
    bad_p = json.loads(good) | {"_label_probability": 1.5}
    no_p = json.loads(good)
    del no_p["_label_probability"]
    path.write_text("\n".join([good, "{not json", json.dumps(bad_p), json.dumps(no_p)]) + "\n")
    report = ReadReport()
    assert len(list(joined_decisions(tmp_path, catalog, report))) == 1
    assert report.skipped == {"invalid JSON": 1, "probability missing or out of (0, 1]": 1,
                              "missing field": 1}


def test_offline_join_matches_online_reward(tmp_path, catalog):
    """The offline join gives the same cost the server learned from."""
    e = DecisionEngine(catalog, log_dir=tmp_path, seed=9, honour_request_time=True)
    learned = []
    original = e.model.learn_dsjson
    e.model.learn_dsjson = lambda line: (learned.append(json.loads(line)), original(line))
    for i in range(40):
        when = T0 + dt.timedelta(hours=i)
        d = e.decide(request(f"c{i}", when))
        if i % 3 == 0:
            e.report_outcome(Outcome(d.event_id, "click", OutcomeType.CLICKED, 0, when))
            e.report_outcome(Outcome(d.event_id, "buy", OutcomeType.CONVERTED, 50.0 + i, when))
            e.report_outcome(Outcome(d.event_id, "buy", OutcomeType.CONVERTED, 50.0 + i, when))
        if i % 5 == 0:
            e.report_outcome(Outcome(d.event_id, "u", OutcomeType.UNSUBSCRIBED, 0, when))
    e.mature(T0 + dt.timedelta(days=30))
    e.close()
    online = {r["EventId"]: r["_label_cost"] for r in learned}
    offline = {r["EventId"]: r["_label_cost"] for r in joined_decisions(tmp_path, catalog)}
    assert len(online) == 40 and online == offline
    assert any(cost < -10 for cost in offline.values())


_DEFAULT = load_catalog()
EXPLORING = dataclasses.replace(_DEFAULT, exploration=dataclasses.replace(_DEFAULT.exploration, epsilon=0.1))


@pytest.mark.slow
@pytest.mark.parametrize("catalog", [EXPLORING], ids=["epsilon_0.1"])
def test_vw_learns_from_a_joined_server_log(server, tmp_path, catalog):
    """Drive a real gRPC server that explores 10 % of the time (the ``server`` fixture over this
    catalog), then train a fresh VW model from its log through VW's DSJSON reader: the model
    learns what paid."""
    assert server.engine.catalog.exploration.epsilon == 0.1
    with NBAClient(f"127.0.0.1:{server.port}") as client:
        requests = [request(f"c{i % 100}", T0 + dt.timedelta(minutes=10 * i), consented_channels=("email",))
                    for i in range(1500)]
        for d, r in zip(client.decide_many(requests, timeout=120), requests):
            if d.action.offer_id == "free_shipping":
                client.report_outcome(d.event_id, "c", "CLICKED", 0.0, time=r.decision_time)
                client.report_outcome(d.event_id, "b", "CONVERTED", 90.0, time=r.decision_time)
    server.stop(grace=5)
    log_dir = server.engine.decision_log.directory
    joined = tmp_path / "joined.dsjson"
    with joined.open("w") as out:
        for record in joined_decisions(log_dir, catalog):
            out.write(json.dumps(record) + "\n")
    ws = vw.Workspace(catalog.model.vw_args())
    with open(joined) as handle, vw.DSJsonFormatReader(ws, handle) as reader:
        for examples in reader:
            ws.learn_one(examples)
    probe = json.loads(joined.read_text().splitlines()[0])
    scores = ws.predict_one(vw.DSJsonFormatParser(ws).parse_json(json.dumps(probe)))
    best_index = min(scores, key=lambda s: s[1])[0]
    assert probe["_nba"]["actions"][best_index].startswith("free_shipping/")
    assert os.path.getsize(joined) > 0
