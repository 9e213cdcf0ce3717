"""Off-policy evaluation, offline training, the MLflow registry, promotion and hot reload."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import threading
import time

import grpc
import numpy as np
import pytest

from engine.catalog import load_catalog
from engine.client import NBAClient
from engine.domain import Outcome, OutcomeType
from engine.pipeline import DecisionEngine
from engine.model_follower import ModelFollower
from engine.server import start_server
from simulators.ope import OracleTarget, action_label, TruthAccumulator, log_targeted, log_uniform, validation_scenario
from simulators.runner import Simulation
from support import T0, request
from training import registry
from training.commands import run_evaluate
from training.dataset import iter_decisions, split_time
from training.estimators import DM
from training.evaluate import evaluate_logs
from training.logs import ReadReport
from engine.models import load_model, save_model
from training.target_policies import Logged, ModelPolicy, NoContact, Rules, Uniform
from training.train import TrainParams, train

PARAMS = TrainParams(cb_type="mtr", learning_rate=0.02, power_t=0.0)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The engine exploring uniformly in the simulator: logs plus the ground truth."""
    scenario = validation_scenario()
    sim = Simulation(scenario, customers=2500, days=21, seed=11)
    log_dir = tmp_path_factory.mktemp("uniform-logs")
    recorder = log_uniform(sim, log_dir, seed=11)
    return scenario.catalog, log_dir, recorder


@pytest.mark.slow
def test_ground_truth_matches_what_the_logs_record(logged):
    """The simulator's exact expected logged reward agrees with the rewards the engine's logs
    actually hold, overall and for no contact (the organic purchases alone)."""
    catalog, log_dir, recorder = logged
    rows = [(d.reward, recorder.q_star(d)[d.chosen], d.actions[d.chosen] == "no_contact")
            for d in iter_decisions(log_dir, catalog)]
    reward, truth, none = (np.array(c) for c in zip(*rows))
    assert len(reward) > 6000
    se = reward.std() / np.sqrt(len(reward))
    assert abs(reward.mean() - truth.mean()) < 4 * se
    # Decisions that contacted nobody still carry the customer's organic purchases.
    se_none = max(reward[none].std(), 1.0) / np.sqrt(none.sum())
    assert abs(reward[none].mean() - truth[none].mean()) < 4 * se_none
    assert truth[none].mean() > 0.3


@pytest.mark.slow
def test_estimates_agree_with_ground_truth_within_their_intervals(logged):
    catalog, log_dir, recorder = logged
    truth = TruthAccumulator(recorder)
    policies = [Uniform(), Rules(), OracleTarget(recorder), NoContact()]
    ev = evaluate_logs(log_dir, catalog, policies, observer=truth)
    assert ev.n == len(truth.logged_truth)
    for p in policies:
        s = ev.summary(p.name)
        half = s["dr"]["high"] - s["dr"]["value"]
        assert abs(s["dr"]["value"] - truth.truth(p.name)) < 2.5 * half, p.name  # ~4.9 SE
    # The logging policy is uniform: its estimate is the mean reward, with the full sample.
    s = ev.summary("uniform")
    assert s["effective_sample_size"] == pytest.approx(ev.n)
    # Intervals are clustered by customer: each customer had several decisions.
    customers = {d.customer_id for d in iter_decisions(log_dir, catalog)}
    assert s["customers"] == len(customers) < ev.n
    assert ev.rounds["uniform"].clusters == len(customers)
    assert s["ips"]["value"] == pytest.approx(ev.rounds["uniform"].reward.mean())
    # Deterministic targets keep about 1/K of it.
    assert ev.summary("rules")["effective_sample_size"] < ev.n / 20
    # The oracle is the best by ground truth on every decision.
    assert truth.truth("oracle") >= max(truth.truth(n) for n in ("uniform", "rules", "no_contact"))


@pytest.mark.slow
def test_targeted_logging_explores_around_its_targets(tmp_path):
    """Logging around rules and the oracle: their actions are likely, every action possible,
    the logged probabilities are the engine's, and DR on them is closer than under uniform
    logging (its interval is narrower) while still covering the truth."""
    scenario = validation_scenario()
    catalog = scenario.catalog
    sim = Simulation(scenario, customers=1200, days=14, seed=5)
    recorder = log_targeted(sim, tmp_path, seed=5, policies=[Rules()], explore=0.2)
    oracle = OracleTarget(recorder)
    decisions = list(iter_decisions(tmp_path, catalog))
    assert len(decisions) > 1500
    logged = np.array([Logged().probabilities(d) for d in decisions], dtype=object)
    p_rules = np.array([lp @ Rules().probabilities(d) for lp, d in zip(logged, decisions)])
    p_oracle = np.array([lp @ oracle.probabilities(d) for lp, d in zip(logged, decisions)])
    p_min = np.array([lp.min() for lp in logged])
    # p = 0.8 * (rules + oracle) / 2 + 0.2 / K
    assert p_rules.min() >= 0.4 and p_oracle.min() >= 0.4
    k = np.array([len(lp) for lp in logged])
    assert np.allclose(p_min, 0.2 / k)
    assert np.allclose([lp.sum() for lp in logged], 1.0)
    truth = TruthAccumulator(recorder)
    ev = evaluate_logs(tmp_path, catalog, [Rules(), oracle], observer=truth)
    for name in ("rules", "oracle"):
        s = ev.summary(name)
        assert s["effective_sample_size"] > ev.n / 3, name
        half = s["dr"]["high"] - s["dr"]["value"]
        assert abs(s["dr"]["value"] - truth.truth(name)) < 2.5 * half, name


@pytest.mark.slow
def test_mtr_without_importance_weights_is_least_squares_on_the_chosen_action(logged):
    """importance_weighted = false learns as if every logged probability were 1."""
    import dataclasses

    from engine.value_model import ValueModel

    catalog, log_dir, _ = logged
    decisions = [d for _, d in zip(range(300), iter_decisions(log_dir, catalog))]
    settings = dataclasses.replace(catalog.model, cb_type="mtr", importance_weighted=True)
    plain = ValueModel(dataclasses.replace(settings, importance_weighted=False))
    weighted = ValueModel(settings)
    as_if_one = ValueModel(settings)
    for d in decisions:
        plain.learn_dsjson(d.line)
        weighted.learn_dsjson(d.line)
        record = dict(d.record, _label_probability=1.0, p=[1.0] + d.record["p"][1:])
        as_if_one.learn_dsjson(json.dumps(record))
    d = decisions[-1]
    n = len(d.actions)
    assert np.allclose(plain.values(d.context, n), as_if_one.values(d.context, n))
    assert not np.allclose(plain.values(d.context, n), weighted.values(d.context, n))


@pytest.mark.slow
def test_learning_the_logged_action_alone_gives_the_full_lines_model(logged):
    """mtr learns only the logged action (weighted 1/p x decisions / actions seen): a line with
    that action alone and its probability rescaled gives the same model as the full lines."""
    from engine.value_model import ValueModel
    from training.evaluate import ChosenActionLearner

    catalog, log_dir, _ = logged
    decisions = [d for _, d in zip(range(1500), iter_decisions(log_dir, catalog))]
    for weighted, learning_rate, power_t in ((True, 0.02, 0.0), (False, 0.02, 0.0), (True, 0.5, 0.5)):
        settings = dataclasses.replace(catalog.model, cb_type="mtr", learning_rate=learning_rate, power_t=power_t,
                                       importance_weighted=weighted)
        full, alone = ValueModel(settings), ChosenActionLearner(settings, "alone")
        for d in decisions:
            full.learn_dsjson(d.line)
            alone.learn(d)
        gaps = [np.abs(full.values(d.context, len(d.actions)) - alone.model.values(d.context, len(d.actions))).max()
                for d in decisions[-200:]]
        spread = np.std(full.values(decisions[-1].context, len(decisions[-1].actions)))
        assert max(gaps) < 1e-4 < spread, weighted
    # parsed once, scored by another model with the same settings: the same values
    d = decisions[-1]
    examples = alone.model.parse(d.context)
    assert np.array_equal(full.values_parsed(examples, len(d.actions)), full.values(d.context, len(d.actions)))
    with pytest.raises(ValueError, match="mtr"):
        ChosenActionLearner(dataclasses.replace(settings, cb_type="ips"), "ips")


@pytest.mark.slow
def test_the_reward_models_refits_widen_dm_and_not_ips(logged):
    """The refits' spread enters the intervals of the estimators that lean on the model (DM
    most), not IPS's; without refits the model is taken as fixed."""
    catalog, log_dir, _ = logged
    with_refits = evaluate_logs(log_dir, catalog, [Rules()], refits=8, refit_rows=300)
    fixed = evaluate_logs(log_dir, catalog, [Rules()], refits=0)
    a, b = with_refits.summary("rules"), fixed.summary("rules")
    width = lambda s, e: s[e]["high"] - s[e]["low"]  # noqa: E731
    assert a["dm"]["value"] == pytest.approx(b["dm"]["value"])  # the same model: refits change no estimate
    assert width(a, "ips") == pytest.approx(width(b, "ips"))
    assert width(a, "dm") > width(b, "dm")
    # DM's interval also carries its bias bound; its standard error is the model's spread alone
    assert DM().standard_error(with_refits.rounds["rules"]) > 2 * DM().standard_error(fixed.rounds["rules"])
    assert with_refits.rounds["rules"].refits.v.shape == (8, 300)
    assert fixed.rounds["rules"].refits is None
    with pytest.raises(ValueError, match="refits"):
        evaluate_logs(log_dir, catalog, [Rules()], refits=1)


@pytest.mark.slow
def test_reward_model_learns_the_mean_reward(logged):
    catalog, log_dir, _ = logged
    ev = evaluate_logs(log_dir, catalog, [Logged()])
    r = ev.rounds["logged"]
    assert r.q_logged.mean() == pytest.approx(r.reward.mean(), abs=0.3)
    assert np.mean((r.reward - r.q_logged) ** 2) < r.reward.var() * 1.01  # out of fold


@pytest.mark.slow
def test_time_split_and_training_on_earlier_logs(logged, tmp_path):
    catalog, log_dir, _ = logged
    cut = split_time(log_dir, 0.6)
    result = train(log_dir, catalog, PARAMS, end=cut)
    later = list(iter_decisions(log_dir, catalog, start=cut))
    assert result.decisions > 0 and later
    assert all(d.time >= cut for d in later)
    assert result.decisions + len(later) == sum(1 for _ in iter_decisions(log_dir, catalog))
    assert result.examples_per_second > 0
    saved = save_model(tmp_path / "m", result.model.serialize(), result.settings, {})
    model = load_model(saved, catalog, "candidate")
    d = later[0]
    assert np.allclose(model.values(d.context, len(d.actions)), result.model.values(d.context, len(d.actions)))


class _LuckySlot:
    """Values by action label: the new collection by email steady at 0.05 EUR on every send
    slot; 10 EUR off by email 0.08 on its first slot and -0.05 on the others (one lucky
    estimate); no contact 0, the rest -0.1. Its best action and its best mean differ."""

    version = "lucky-slot"

    def values(self, context, n):
        labels = [action_label(a) for a in json.loads(context)["_multi"]]
        out = np.full(n, -0.1)
        lucky = next((i for i, label in enumerate(labels) if label.startswith("discount_10/email/")), None)
        for i, label in enumerate(labels):
            if label == "no_contact":
                out[i] = 0.0
            elif label.startswith("new_collection/email/"):
                out[i] = 0.05
            elif label.startswith("discount_10/email/"):
                out[i] = 0.08 if i == lucky else -0.05
        return out


def test_a_model_policy_chooses_as_the_server_does(tmp_path):
    """Offline, a model is evaluated with the catalog's exploration applied as the server
    applies it -- here send slots averaged -- so its probabilities are exactly those the server
    logs for the same values."""
    scenario = validation_scenario()
    settings = dataclasses.replace(scenario.catalog.exploration, algorithm="epsilon_greedy", epsilon=0.05,
                                   slot_value="mean")
    served = dataclasses.replace(scenario.catalog, exploration=settings,
                                 constraints=dataclasses.replace(scenario.catalog.constraints, budgets=()))
    engine = DecisionEngine(served, model=_LuckySlot(), log_dir=tmp_path, seed=1, honour_request_time=True)
    sim = Simulation(scenario, customers=300, days=7, seed=2)
    requests = sim.batch(sim.population.copy(), 0.0).requests()  # the reachable customers
    for r in requests:
        engine.decide(r)
    engine.close()
    decisions = list(iter_decisions(tmp_path, served))
    assert len(decisions) == len(requests) > 200
    offline = ModelPolicy("candidate", _LuckySlot(), settings)
    for d in decisions:
        assert np.allclose(offline.probabilities(d), Logged().probabilities(d)), d.event_id
    # The server sent the steady offer, not the lucky slot, wherever it could email.
    emailed = [d for d in decisions if any(a.startswith("discount_10/email/") for a in d.actions)]
    assert len(emailed) > 100
    assert all(d.actions[d.chosen].startswith("new_collection/email/") for d in emailed
               if Logged().probabilities(d)[d.chosen] > 0.05)
    best = ModelPolicy("candidate", _LuckySlot(), dataclasses.replace(settings, slot_value="best"))
    assert not any(np.allclose(best.probabilities(d), Logged().probabilities(d)) for d in emailed)


@pytest.mark.slow
def test_bad_training_settings_are_named(logged):
    catalog, log_dir, _ = logged
    with pytest.raises(ValueError, match="passes"):
        train(log_dir, catalog, TrainParams(passes=0))
    with pytest.raises(ValueError, match="cb_type"):
        train(log_dir, catalog, TrainParams(cb_type="nope"))
    with pytest.raises(ValueError, match="interaction"):
        train(log_dir, catalog, TrainParams(interactions=("UOC",)))
    with pytest.raises(ValueError, match="structure must be one of direct, funnel, got 'x'"):
        train(log_dir, catalog, TrainParams(structure="x"))
    with pytest.raises(ValueError, match="train fraction"):
        split_time(log_dir, 1.5)


@pytest.mark.slow
def test_partial_and_corrupt_lines_are_counted_not_fatal(logged, tmp_path):
    catalog, log_dir, _ = logged
    for f in log_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    [decisions] = sorted(tmp_path.glob("decisions-*.jsonl"))
    lines = decisions.read_text().splitlines(keepends=True)
    bad = json.loads(lines[1])
    bad["_label_probability"] = 1.5
    no_labels = json.loads(lines[2])
    del no_labels["_nba"]["actions"]
    corrupted = [lines[0], json.dumps(bad) + "\n", json.dumps(no_labels) + "\n", "{not json\n", *lines[3:],
                 lines[0][:50]]
    decisions.write_text("".join(corrupted))
    report = ReadReport()
    got = list(iter_decisions(tmp_path, catalog, report))
    assert len(got) == len(lines) - 2
    assert report.skipped["probability missing or out of (0, 1]"] == 1
    assert report.skipped["action labels missing or not one per action"] == 1
    assert report.skipped["invalid JSON"] == 1
    assert report.skipped["truncated last line"] == 1


@pytest.mark.slow
def test_evaluate_json_has_every_estimator(logged, capsys, tmp_path):
    catalog, log_dir, _ = logged
    run_evaluate(log_dir, catalog, ["rules"], None, None, as_json=True, greedy=False, passes=1,
                 mlflow_on=False, progress=False)
    out = json.loads(capsys.readouterr().out)
    assert out["n"] > 6000
    for est in ("ips", "snips", "dm", "dr"):
        assert set(out[est]) == {"value", "low", "high"}
        assert out[est]["low"] <= out[est]["value"] <= out[est]["high"]
    # The rules are deterministic and far from the logging policy: the weights say so.
    weights = out["weights"]
    assert weights["effective_sample_size"] == out["effective_sample_size"] < out["n"] / 20
    assert weights["max_weight"] >= weights["p99"] >= weights["p50"] and 0 <= weights["zero_share"] <= 1
    assert isinstance(out["warnings"], list) and weights["reliable"] == (not out["warnings"])
    assert "shrinkage" in out["dr_os_tuned"]


def test_promotion_rule():
    hi = {"value": 1.5, "low": 1.3, "high": 1.7}
    lo = {"value": 1.2, "low": 1.0, "high": 1.4}
    yes = registry.decide_promotion("v2", hi, "v1", lo, 1000)
    assert yes.promoted and "beats" in yes.reason
    # Better estimate but the interval reaches below the champion: not promoted.
    wide = {"value": 1.5, "low": 1.1, "high": 1.9}
    no = registry.decide_promotion("v2", wide, "v1", lo, 1000)
    assert not no.promoted and "does not beat" in no.reason
    # A clear win on too few effective decisions is not acted on.
    thin = registry.decide_promotion("v2", hi, "v1", lo, 50_000, ess=registry.PROMOTION_MIN_ESS - 1)
    assert not thin.promoted and "effective sample size 999 of 50,000" in thin.reason
    assert registry.decide_promotion("v2", hi, "v1", lo, 50_000, ess=registry.PROMOTION_MIN_ESS).promoted


def _register(catalog, logs, tmp_path, tag: str) -> str:
    import mlflow

    result = train(logs, catalog, PARAMS)
    model_dir = save_model(tmp_path / tag, result.model.serialize(), result.settings, {})
    registry.use_tracking(None, "training")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
    return registry.register(run.info.run_id, run.info.artifact_uri, "test-policy")


@pytest.mark.slow
def test_registry_promotion_records_why(logged, tmp_path, monkeypatch):
    catalog, log_dir, _ = logged
    monkeypatch.chdir(tmp_path)
    version = _register(catalog, log_dir, tmp_path, "a")
    assert registry.champion_version("test-policy") is None
    decision = registry.decide_promotion(f"test-policy/{version}", {"value": 2, "low": 1.9, "high": 2.1},
                                         "logged", {"value": 1.0, "low": 0.9, "high": 1.1}, 10)
    registry.record_promotion("test-policy", version, decision)
    assert registry.champion_version("test-policy") == version
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version("test-policy", version).tags
    assert tags["promotion"] == "promoted" and "beats" in tags["promotion_reason"]
    local, label = registry.download("models:/test-policy@champion")
    assert (local / "model.vw").exists() and label == f"test-policy/{version}"
    with pytest.raises(ValueError, match="models:/"):
        registry.parse_model_uri("runs:/abc/model")


@pytest.mark.slow
def test_promote_evaluates_after_the_candidates_training_data(logged, tmp_path, monkeypatch, capsys):
    """Without --after, nba promote scores the candidate only on decisions later than those it
    was trained on (in-sample estimates flatter it)."""
    import mlflow

    from training.commands import run_promote

    catalog, log_dir, _ = logged
    monkeypatch.chdir(tmp_path)
    cut = split_time(log_dir, 0.6)
    result = train(log_dir, catalog, PARAMS, end=cut)
    model_dir = save_model(tmp_path / "m", result.model.serialize(), result.settings,
                           {"trained_until": cut.isoformat()})
    registry.use_tracking(None, "training")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
    version = registry.register(run.info.run_id, run.info.artifact_uri, "later-policy")
    capsys.readouterr()
    run_promote(log_dir, catalog, f"models:/later-policy/{version}", None, progress=False)
    out = capsys.readouterr().out
    assert f"evaluating on decisions from {cut.isoformat()}" in out
    later = sum(1 for d in iter_decisions(log_dir, catalog) if d.time >= cut)
    runs = mlflow.search_runs(experiment_names=["evaluation"], order_by=["start_time DESC"])
    assert int(runs.iloc[0]["metrics.logged.n"]) == later < result.decisions + later


@pytest.mark.slow
def test_reload_under_load_fails_no_call(logged, tmp_path, monkeypatch):
    """A client hammers NextBestAction while the champion alias moves: no call fails, and the
    new version serves within the poll interval (plus the load time)."""
    catalog, log_dir, _ = logged
    monkeypatch.chdir(tmp_path)
    v1 = _register(catalog, log_dir, tmp_path, "v1")
    v2 = _register(catalog, log_dir, tmp_path, "v2")
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias("test-policy", "champion", v1)
    engine = DecisionEngine(catalog, seed=3)
    poll = 0.5
    follower = ModelFollower(engine, catalog, "models:/test-policy@champion", poll_seconds=poll)
    running = start_server(engine, port=0, follower=follower)
    client = NBAClient(f"127.0.0.1:{running.port}", timeout=10)
    seen, failures, stop = [], [], threading.Event()

    def hammer(k):
        i = 0
        while not stop.is_set():
            try:
                d = client.decide(request(f"c{k}-{i}", T0))
                seen.append((time.monotonic(), d.model_version))
            except grpc.RpcError as exc:
                failures.append(exc)
            i += 1

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert engine.model.version == f"test-policy/{v1}"
        moved = time.monotonic()
        MlflowClient().set_registered_model_alias("test-policy", "champion", v2)
        deadline = moved + poll + 5.0
        while engine.model.version != f"test-policy/{v2}" and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    first_new = min(t for t, v in seen if v == f"test-policy/{v2}")
    assert failures == []
    assert len(seen) > 50
    assert first_new - moved < poll + 2.0
    assert {v for _, v in seen} == {f"test-policy/{v1}", f"test-policy/{v2}"}
    # The admin RPC: nothing new to load now.
    reply = client.reload_policy()
    assert reply.model_version == f"test-policy/{v2}" and not reply.reloaded
    assert client.policy().model_version == f"test-policy/{v2}"
    client.close()
    running.stop(1)


def test_reload_rpc_without_a_model_uri_is_refused(server):
    client = NBAClient(f"127.0.0.1:{server.port}", timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        client.reload_policy()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    client.close()


def test_the_table_flags_a_policy_whose_weights_cannot_be_trusted_and_says_why():
    from training.estimators import LoggedRounds
    from training.evaluate import Evaluation, table, warnings_text

    n = 2000
    reward, ones = np.ones(n), np.ones(n)
    fair = LoggedRounds(reward, np.full(n, 0.5), np.full(n, 0.5), ones, ones)
    skewed_target = np.zeros(n)
    skewed_target[:3] = 1.0                      # the target takes what the logs almost never did
    skewed = LoggedRounds(reward, np.full(n, 0.001), skewed_target, ones, ones)
    ev = Evaluation({"fair": fair, "skewed": skewed}, [str(i) for i in range(n)], ReadReport(), 0.0)
    lines = table(ev).splitlines()
    assert lines[2].startswith("fair") and not lines[2].endswith("(!)")
    assert lines[3].startswith("skewed") and lines[3].endswith("(!)")
    text = warnings_text(ev)
    assert "(!) skewed: effective sample size 3.0 of 2,000 rounds is under 100" in text and "fair" not in text


@pytest.mark.parametrize("value, message", [("1", "0 \\(none\\) or at least 2, got 1"), ("-3", "0 .*, got -3"),
                                            ("many", "an integer, got 'many'")])
def test_evaluate_names_a_bad_refits_count(value, message, capsys, tmp_path):
    from nba.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--logs", str(tmp_path), "--policy", "rules", f"--refits={value}"])
    assert exit_.value.code == 2
    assert re.search(f"--refits must be {message}", capsys.readouterr().err)


@pytest.mark.slow
def test_evaluate_on_a_local_ray_of_two_workers_gives_the_same_estimates(logged, capsys, tmp_path):
    """`nba evaluate --workers 2`: each fold's reward model learned in a task of its own, the
    decisions scored in others, the columns joined in log order -- the estimates are the ones
    the command makes in one process, to the last digit. A truncated and a corrupt line are
    counted once, as in one process."""
    from nba.cli import main

    catalog, log_dir, _ = logged
    copy = tmp_path / "logs"
    copy.mkdir()
    for f in log_dir.glob("*.jsonl"):
        (copy / f.name).write_bytes(f.read_bytes())
    last = sorted(copy.glob("decisions-*.jsonl"))[-1]
    with last.open("ab") as out:
        out.write(b'{"not": "a decision"}\n{"EventId": "broken\n')
    argv = ["evaluate", "--logs", str(copy), "--policy", "rules", "--policy", "uniform", "--no-mlflow",
            "--no-progress"]
    # the logs in one process; on Ray, from the Parquet cache the run makes first
    assert main([*argv, "--json", "--refits", "4", "--no-cache"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main([*argv, "--json", "--refits", "4", "--workers", "2"]) == 0
    on_ray = json.loads(capsys.readouterr().out)
    assert on_ray == alone
    assert alone["rules"]["n"] > 6000 and alone["rules"]["dm"]["value"] != alone["uniform"]["dm"]["value"]
    # the logs on Ray; the cache in one process (the tables, with what reading skipped)
    outputs = []
    for extra in (["--no-cache", "--workers", "2"], []):
        assert main([*argv, "--refits", "0", *extra]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "skipped: 1 invalid JSON, 1 missing field" in outputs[0]


@pytest.mark.slow
def test_training_on_a_local_ray_or_from_the_cache_makes_the_same_model(logged, tmp_path):
    """`nba train --workers 2`: Ray tasks read and join runs of log files ahead of the learning,
    which takes their lines in log order -- the model is the one-process model, byte for byte;
    so is the model trained from the Parquet cache."""
    catalog, log_dir, _ = logged
    copy = tmp_path / "logs"
    copy.mkdir()
    for f in log_dir.glob("outcomes-*.jsonl"):
        (copy / f.name).write_bytes(f.read_bytes())
    lines = [line for f in sorted(log_dir.glob("decisions-*.jsonl")) for line in f.open("rb")]
    for k in range(5):  # five files, as rotation would have made them: five runs for the tasks
        (copy / f"decisions-part-{k}.jsonl").write_bytes(b"".join(lines[k * len(lines) // 5:(k + 1) * len(lines) // 5]))
    alone = train(copy, catalog, PARAMS)
    on_ray = train(copy, catalog, PARAMS, workers=2)
    cached = train(copy, catalog, PARAMS, cache=True)
    for other in (on_ray, cached):
        assert other.decisions == alone.decisions > 6000 and str(other.report) == str(alone.report)
        assert other.model.serialize() == alone.model.serialize()


def small_logs(directory, n: int = 300):
    """An engine's logs: ``n`` decisions, some opened, some bought, and two bad lines."""
    catalog = load_catalog()
    engine = DecisionEngine(catalog, seed=1, honour_request_time=True, log_dir=directory)
    for i in range(n):
        when = T0 + dt.timedelta(minutes=i)
        d = engine.decide(request(f"c{i % 97}", when))
        if i % 2:
            engine.report_outcome(Outcome(d.event_id, f"o{i}", OutcomeType.OPENED, 0.0, when))
        if i % 7 == 0:
            engine.report_outcome(Outcome(d.event_id, f"p{i}", OutcomeType.CONVERTED, 40.0 + i % 50, when))
    engine.close()
    with sorted(directory.glob("decisions-*.jsonl"))[-1].open("ab") as f:
        f.write(b'{"no": "decision"}\n{"EventId": "torn')
    return catalog


def test_the_cache_gives_what_the_logs_give_and_is_made_again_when_they_change(tmp_path):
    from training.cache import DIRECTORY, build, cached_decisions

    catalog = small_logs(tmp_path)
    path, made = build(tmp_path, catalog)
    assert made and path.parent.name == DIRECTORY and build(tmp_path, catalog) == (path, False)
    fields = lambda d: (d.event_id, d.time, d.actions, d.chosen, d.probability, d.reward, d.log_line,  # noqa: E731
                        d.context, d.chosen_line, d.line, d.customer, d.customer_id, d.opened, d.logged)
    from_logs, from_cache = ReadReport(), ReadReport()
    logs = [fields(d) for d in iter_decisions(tmp_path, catalog, from_logs, start=T0 + dt.timedelta(minutes=10))]
    cache = [fields(d) for d in cached_decisions(path, from_cache, start=T0 + dt.timedelta(minutes=10))]
    assert len(logs) == 290 and cache == logs and str(from_cache) == str(from_logs)
    assert "1 truncated last line" in str(from_logs) and "1 missing field" in str(from_logs)
    trained = [d for d in cached_decisions(path, use="train")]
    with pytest.raises(ValueError, match="without its joined line"):
        next(cached_decisions(path, use="evaluate")).line
    assert trained[10].line == logs[0][9]
    # one more outcome: another key, the old cache deleted, the new one holds it
    other = next(tmp_path.glob("outcomes-*.jsonl"))
    with other.open("a") as f:
        f.write(json.dumps({"EventId": logs[0][0], "OutcomeId": "late", "Type": "OPENED", "Value": 0.0,
                            "Time": "2026-11-02T09:10:00+00:00"}) + "\n")
    new, made = build(tmp_path, catalog)
    assert made and new != path and not path.exists()
    first = next(cached_decisions(new, start=T0 + dt.timedelta(minutes=10)))
    assert first.event_id == logs[0][0] and first.opened and not logs[0][12]
