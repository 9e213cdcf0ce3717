"""One learner for many replicas (``engine.shared_model``): ``nba learn`` publishes through a
real Redis of the tests' own, ``nba serve --follow-learner`` replicas serve what it publishes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid

import pytest
from support import T0, request

from engine.catalog import load_catalog
from engine.domain import Outcome, OutcomeType
from engine.pipeline import DecisionEngine
from engine.redis_store import RedisStateStore
from engine.settings import ConfigError
from engine.shared_model import Learner, LearnerFollower, ModelChannel
from harness.replicas import LearnerAndReplicas, offline_comparison


@pytest.fixture
def store(redis_server):
    s = RedisStateStore(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def learned_engine(catalog, store, n: int = 30) -> DecisionEngine:
    """An engine on ``store`` that has decided for ``n`` customers, each of whom bought."""
    engine = DecisionEngine(catalog, store=store, seed=3, honour_request_time=True)
    for i in range(n):
        d = engine.decide(request(f"c{i}", T0))
        engine.report_outcome(Outcome(d.event_id, "b", OutcomeType.CONVERTED, 40.0, T0))
    return engine


def test_a_replica_serves_what_the_learner_publishes_and_refuses_a_broken_or_foreign_model(store):
    catalog = load_catalog()
    learner_engine = learned_engine(catalog, store)
    learner = Learner(learner_engine, ModelChannel(store), every_seconds=3600)
    learner.start()
    replica = DecisionEngine(catalog, store=store, seed=4, honour_request_time=True)
    replica.learns = False
    follower = LearnerFollower(replica, ModelChannel(store), poll_seconds=60)
    assert not follower.check().reloaded and replica.model.version == "cold-start"  # nothing published yet

    assert learner_engine.mature(T0 + catalog.attribution_window) == 30
    assert learner.step() is None  # learned, but not yet time to publish
    pub = learner.publish()
    assert (pub.version, pub.updates) == ("online-1", 30) and learner.publish() is None  # nothing new since
    r = follower.check()
    assert r.reloaded and (r.previous_version, r.model_version) == ("cold-start", "online-1")
    probe = request("probe", T0 + catalog.attribution_window)
    assert replica.decide(probe).model_version == "online-1"
    ranked = lambda e: [(x.action.label, round(x.expected_value, 9)) for x in e.decide(probe).ranking]  # noqa: E731
    assert ranked(replica) == ranked(learner_engine)
    assert not follower.check().reloaded  # the same version: not loaded twice

    channel = ModelChannel(store)
    store.r.hset(channel.key, mapping={"version": "online-2", "data": b"torn"})
    with pytest.raises(ValueError, match="do not match their SHA-256"):
        follower.check()
    follower._poll_once()
    assert follower.errors == 1 and replica.model.version == "online-1"  # kept serving

    other = dataclasses.replace(catalog, model=dataclasses.replace(catalog.model, bits=catalog.model.bits - 1))
    foreign = DecisionEngine(other, store=store)
    channel.publish(learner_engine.model, 3)  # whole again, but of the default catalog
    with pytest.raises(ValueError, match="VW arguments"):
        LearnerFollower(foreign, channel).check()


def test_one_learner_per_prefix_and_a_learning_server_refuses_to_run_beside_it(store, tmp_path, redis_server):
    catalog = load_catalog()
    first = Learner(DecisionEngine(catalog, store=store), ModelChannel(store))
    first.start()
    second = Learner(DecisionEngine(catalog, store=store), ModelChannel(store))
    second.holder = "elsewhere:1"
    with pytest.raises(ConfigError, match=r"another learner \(.*\) learns for prefix .* one learner per prefix"):
        second.start()
    run = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--redis", redis_server.url,
                          "--redis-prefix", store.prefix, "--state-dir", str(tmp_path / "s"), "--log-dir",
                          str(tmp_path / "l")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "start this server with --follow-learner" in run.stderr
    first.channel.release(first.holder)
    assert ModelChannel(store).learner() is None


@pytest.mark.parametrize("args, code, message", [
    (["serve", "--follow-learner"], 2, "--follow-learner needs --redis"),
    (["serve", "--follow-learner", "--redis", "redis://127.0.0.1:1/0", "--model-uri", "models:/a@b"], 2,
     "give --follow-learner or --model-uri, not both"),
    (["learn", "--redis", "redis://127.0.0.1:1/0", "--publish-seconds", "0"], 2, "--publish-seconds must be > 0"),
    (["learn", "--redis", "redis://127.0.0.1:1/0"], 1, "Connection refused. (the learner needs it to start)"),
])
def test_bad_learner_options_are_named(args, code, message, tmp_path):
    run = subprocess.run([sys.executable, "-m", "engine.cli", *args, "--state-dir", str(tmp_path / "s")]
                         if args[0] == "serve" else [sys.executable, "-m", "engine.cli", *args],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == code, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_two_replicas_and_one_learner_under_load(tmp_path, redis_server):
    """Both replicas serve each published version within the poll interval of its publication,
    no call fails while versions change, and the learner's model is the one trained offline on
    the replicas' joined logs."""
    poll = 0.5
    with LearnerAndReplicas(tmp_path, redis_server.url, replicas=2, publish_seconds=1.0, poll_seconds=poll) as run:
        load = run.drive_watched(seconds=8, threads_per_replica=2, settle_seconds=30)  # 3.6 s window
        assert run.pending() == 0
        assert not load.failures, load.failures[:3]
        assert load.calls > 100
        served = {r: {v for (k, v), n in load.versions.items() if k == r} for r in range(2)}
        assert all(len({v for v in served[r] if v.startswith("online-")}) >= 2 for r in range(2)), served
        lags = run.watched.lags(2)
        assert len(lags) >= 4 and max(lags) <= poll + 1.0, lags
        last = run.channel.version()
        assert all((r, last) in run.watched.served for r in range(2))
        run.stop_replicas()
        assert run.stop_learner() == 0
        published = run.published_model()

    offline, difference, compared = offline_comparison(run, published, tmp_path / "merged")
    assert published.updates == offline.decisions == load.calls
    assert compared >= 100 and difference < 1e-6
