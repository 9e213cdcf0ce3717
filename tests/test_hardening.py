"""A hostile but fair client against a real server: each finding of the hardening review,
reproduced through the server (or a `nba serve` process), and what now happens instead."""

from __future__ import annotations

import datetime as dt
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.client import NBAClient
from engine.decision_log import log_files
from engine.domain import Outcome, OutcomeType
from engine.guards import ServerLimits
from engine.pipeline import DecisionEngine
from engine.server import SERVICE_NAME, start_server
from nba.v1 import decision_pb2 as pb
from nba.v1 import decision_pb2_grpc as pb_grpc
from support import T0

EMAIL = dict(consented_channels=["email"], timezone="Europe/Paris")


def serve(catalog, tmp_path, limits=ServerLimits(max_calls=8, max_streams=4), **kwargs):
    engine = DecisionEngine(catalog, log_dir=tmp_path / "logs", seed=3, honour_request_time=True)
    return start_server(engine, port=0, limits=limits, **kwargs)


def health_check(port: int, timeout: float = 1.0) -> float:
    """Seconds one health check took (raises on failure)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        started = time.perf_counter()
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        return time.perf_counter() - started


class IdleStream:
    """A NextBestActions stream that sends nothing until told to."""

    def __init__(self, port: int):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.requests: queue.Queue = queue.Queue()
        self.call = pb_grpc.DecisionServiceStub(self.channel).NextBestActions(iter(self.requests.get, None))
        self.status: grpc.StatusCode | None = None
        self.details = ""
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        try:
            for _ in self.call:
                pass
            self.status = grpc.StatusCode.OK
        except grpc.RpcError as err:
            self.status, self.details = err.code(), err.details() or ""

    def close(self):
        self.requests.put(None)
        self.call.cancel()
        self.channel.close()


def test_idle_streams_cannot_stop_health_checks_or_other_decisions(catalog, tmp_path):
    """Finding 1: --workers idle streams used to take every thread. Now streams beyond
    --max-streams are refused at once, health checks and unary calls keep their threads, and an
    idle stream is closed after --stream-idle-seconds."""
    limits = ServerLimits(max_calls=8, max_streams=4, stream_idle_seconds=1.5)
    running = serve(catalog, tmp_path, limits)
    streams = [IdleStream(running.port) for _ in range(20)]
    try:
        time.sleep(0.5)
        refused = [s for s in streams if s.status is grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) == 16 and "--max-streams" in refused[0].details
        assert max(health_check(running.port) for _ in range(20)) < 0.5
        with NBAClient(f"127.0.0.1:{running.port}", timeout=1.0) as c:
            assert c.next_best_action("c-1", decision_time=T0, **EMAIL).event_id
        deadline = time.monotonic() + 10
        while any(s.status is None for s in streams) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(s.status is grpc.StatusCode.CANCELLED for s in streams) == 4  # closed when idle
        assert running.servicer.streams.closed["idle"] == 4 and running.servicer.streams.active() == 0
        with NBAClient(f"127.0.0.1:{running.port}") as c:  # streams work again
            assert len(list(c.decide_many([c_request(i) for i in range(3)]))) == 3
    finally:
        for s in streams:
            s.close()
        running.stop(grace=1)


def c_request(i: int):
    from support import request

    return request(f"s-{i}", T0, consented_channels=("email",))


def test_a_stream_is_closed_after_its_maximum_length(catalog, tmp_path):
    running = serve(catalog, tmp_path, ServerLimits(max_calls=8, max_streams=4, stream_max_requests=3))
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            got = []
            with pytest.raises(grpc.RpcError) as err:
                for d in c.decide_many([c_request(i) for i in range(5)]):
                    got.append(d)
            assert len(got) == 3 and err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--stream-max-requests" in err.value.details()
    finally:
        running.stop(grace=1)


def test_a_client_over_its_rate_gets_resource_exhausted(catalog, tmp_path):
    running = serve(catalog, tmp_path, ServerLimits(max_calls=8, max_streams=4, rate_per_client=5))
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            codes = []
            for i in range(20):
                try:
                    c.next_best_action(f"r-{i}", decision_time=T0, **EMAIL)
                    codes.append("OK")
                except grpc.RpcError as err:
                    codes.append(err.code().name)
                    assert "--rate-per-client" in err.details()
        assert 4 <= codes.count("OK") <= 7 and codes.count("RESOURCE_EXHAUSTED") >= 13
        assert health_check(running.port) < 0.5  # health checks are not rate limited
    finally:
        running.stop(grace=1)


def test_an_outcome_beyond_the_largest_order_is_refused_and_the_largest_keeps_decisions_finite(catalog, tmp_path):
    """Finding 2: CONVERTED with value 1e300 used to be accepted and, once matured, made every
    value NaN. It is INVALID_ARGUMENT naming the bound; orders of the largest allowed value,
    learned, leave every value finite and the logged probabilities summing to 1."""
    running = serve(catalog, tmp_path)
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            d = c.next_best_action("c-0", decision_time=T0, **EMAIL)
            with pytest.raises(grpc.RpcError) as err:
                c.report_outcome(d.event_id, "buy", "CONVERTED", 1e300, time=T0)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "value: must be at most 10000 EUR (the catalog's limits.max_order_value), got 1e+300" \
                in err.value.details()
            largest = catalog.max_order_value
            for i in range(40):
                d = c.next_best_action(f"c-{i}", decision_time=T0, **EMAIL)
                c.report_outcome(d.event_id, "click", "CLICKED", time=T0)
                for k in range(3):  # more than one order: the reward is clipped to the catalog's range
                    c.report_outcome(d.event_id, f"buy-{k}", "CONVERTED", largest, time=T0)
            later = T0 + dt.timedelta(days=8)
            decisions = [c.next_best_action(f"n-{i}", decision_time=later, **EMAIL) for i in range(30)]
            assert all(np.isfinite(d.expected_value) for d in decisions)
            assert all(np.isfinite(s.expected_value) for d in decisions for s in d.ranking)
            counters = c.policy().counters
            assert counters.learned >= 41 and counters.rewards_clipped == 40 and counters.model_rollbacks == 0
    finally:
        running.stop(grace=1)
    lines = [json.loads(line) for path in log_files(tmp_path / "logs", "decisions") for line in path.open()]
    assert len(lines) == 71
    assert all(abs(sum(line["p"]) - 1) < 1e-9 for line in lines)


def test_a_model_whose_values_turn_non_finite_is_not_served(catalog):
    """The last good copy serves instead, and it is counted."""
    from support import request

    e = DecisionEngine(catalog, seed=1, honour_request_time=True)
    d = e.decide(request("c-1", T0))
    e.report_outcome(Outcome(d.event_id, "o", OutcomeType.OPENED))
    e.mature(T0 + dt.timedelta(days=8))  # learned: a good copy is kept
    broken = e.model
    broken._scores = lambda examples, n: np.full(n, np.nan)  # the served model breaks
    decision = e.decide(request("c-2", T0 + dt.timedelta(days=8)))
    assert np.isfinite(decision.expected_value) and e.policy().counters["model_rollbacks"] == 1
    assert e.model is not broken and np.isfinite(e.model.values(*_probe(e))).all()


def _probe(engine):
    from engine.feasibility import feasible_actions
    from support import request

    r = request("probe", T0)
    actions = feasible_actions(r, engine.catalog, T0).actions
    snap = engine.store.snapshot("probe", T0, dt.timedelta(days=7), [])
    return engine.features.context_json(r, snap.customer.history(T0), actions), len(actions)


RESERVED = ["_label_cost", "_text", "_tag", "_multi", "_slots", "__aid", "_label", "_labelIndex", "_p"]


@pytest.mark.parametrize("name", RESERVED)
def test_feature_names_the_model_reserves_are_invalid_argument_not_internal(server, name):
    """Finding 4: numeric or categorical features named like VW's own keys crashed the handler."""
    with NBAClient(f"127.0.0.1:{server.port}") as c:
        for kind in ("numeric_features", "categorical_features"):
            value = {name: 1.0} if kind == "numeric_features" else {name: "x"}
            with pytest.raises(grpc.RpcError) as err:
                c.next_best_action("c-1", decision_time=T0, **{kind: value}, **EMAIL)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(f"{kind}: feature name '{name}' starts with '_'")


def test_a_huge_bad_value_gets_a_short_invalid_argument(server):
    """Finding 8: the error echoed a 1 MB bad value whole and became RESOURCE_EXHAUSTED."""
    with NBAClient(f"127.0.0.1:{server.port}") as c:
        for bad in ({"timezone": "X" * 1_000_000}, {"consented_channels": ["fax" * 300_000]},
                    {"categorical_features": {"segment": "y" * 500_000}}):
            with pytest.raises(grpc.RpcError) as err:
                c.next_best_action("c-1", decision_time=T0, **{**EMAIL, **bad})
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert len(err.value.details()) < 400 and "characters" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            c.report_outcome("e" * 1_000_000, "o", "OPENED")
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and len(err.value.details()) < 400


def test_undecodable_bytes_are_invalid_argument_without_a_traceback(server, caplog):
    """Finding 9: bytes that are not a protobuf message gave INTERNAL and a traceback per call."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for method in ("NextBestAction", "ReportOutcome", "GetPolicy"):
            call = channel.unary_unary(f"/{SERVICE_NAME}/{method}", request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as err:
                call(b"\xff\xff\xff\xff\x0f", timeout=5)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, method
            assert "not a valid nba.v1." in err.value.details()
        stream = channel.stream_stream(f"/{SERVICE_NAME}/NextBestActions", request_serializer=lambda b: b,
                                       response_deserializer=pb.NextBestActionsResponse.FromString)
        good = pb.NextBestActionsRequest(customer_id="c-1", consented_channels=["email"]).SerializeToString()
        first, second, third = stream(iter([good, b"\xff\xff\xff\xff\x0f", good]), timeout=5)
        assert first.decision.event_id and third.decision.event_id
        assert second.position == 1 and second.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert second.error.message.startswith("the request's bytes are not a valid nba.v1.NextBestActionsRequest")
    assert not any(r.exc_info for r in caplog.records)


def test_a_customer_id_with_braces_keeps_its_redis_hash_tag_whole(catalog, redis_server, tmp_path):
    """Finding 13: a customer id with '}' cut the Redis Cluster hash tag short."""
    import redis as redis_py

    from engine.redis_store import RedisStateStore

    store = RedisStateStore(redis_server.url, prefix="tags")
    engine = DecisionEngine(catalog, store=store, seed=3, honour_request_time=True)
    running = start_server(engine, port=0, limits=ServerLimits(max_calls=8, max_streams=4))
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            for cid in ("a}{b", "{x}", "p%7Dq"):
                c.next_best_action(cid, decision_time=T0, **EMAIL)
    finally:
        running.stop(grace=1)
    keys = sorted(k.decode() for k in redis_py.Redis.from_url(redis_server.url).keys("tags:{c:*"))
    tags = {k[len("tags:{"):k.index("}")] for k in keys}
    assert tags == {"c:a%7D%7Bb", "c:%7Bx%7D", "c:p%257Dq"}
    assert all(k.count("{") == 1 and k.count("}") == 1 for k in keys)


def test_a_redis_that_does_not_persist_is_named_and_can_be_refused(tmp_path):
    """Finding 12: Redis without persistence was used silently."""
    from harness.redis_servers import RedisServer

    volatile = RedisServer(extra=["--appendonly", "no"]).start()
    try:
        base = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--log-dir", str(tmp_path / "logs"),
                "--redis", volatile.url]
        refused = subprocess.run([*base, "--require-durable"], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2
        assert "--require-durable: Redis at" in refused.stderr and "appendonly no" in refused.stderr
        proc = subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if "serving nba.v1.DecisionService" in line:
                    break
            assert any("appendonly no: a Redis restart forgets" in line for line in lines), lines
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        volatile.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from harness.certs import TestCA

    ca = TestCA(tmp_path_factory.mktemp("pki"))
    return {"ca": ca.pair, "server": ca.issue("server", "localhost", server=True),
            "client": ca.issue("client", "email-router"),
            "stranger": TestCA(tmp_path_factory.mktemp("other"), "other CA").issue("stranger", "mallory")}


def tokens_file(tmp_path, clients: dict[str, list[str]]) -> tuple[Path, dict[str, str]]:
    from engine.auth import new_token, token_digest

    tokens = {name: new_token() for name in clients}
    text = "".join(f'[[client]]\nname = "{name}"\nsha256 = "{token_digest(tokens[name])}"\nroles = {json.dumps(roles)}\n'
                   for name, roles in clients.items())
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    return path, tokens


def test_a_made_token_passes_on_a_command_line_as_its_own_argument():
    """A token that began with "-" was read by argparse as an option: `--token <token>` failed
    about one time in 64. Made tokens start with "nba_"."""
    import argparse

    from engine.auth import new_token
    from engine.cli import add_commands

    parser = argparse.ArgumentParser(prog="nba")
    add_commands(parser.add_subparsers(dest="command", required=True))
    for token in (new_token() for _ in range(500)):
        assert parser.parse_args(["channel-demo", "--token", token]).token == token
        assert parser.parse_args(["forget", "c-1", "--server", "h:1", "--token", token]).token == token


def test_tokens_and_roles_decide_who_may_call_what(catalog, tmp_path):
    """Finding 5: anyone who reached the port read budgets, reported redemptions, reloaded the
    model. With --tokens: no or an unknown token is UNAUTHENTICATED, a client without the role
    PERMISSION_DENIED, the right one succeeds; health checks stay open."""
    from engine.auth import load_tokens
    from engine.server import Security

    path, tokens = tokens_file(tmp_path, {"email-router": ["decide", "report"], "ops": ["admin"]})
    running = serve(catalog, tmp_path, security=Security(tokens=load_tokens(path)))
    target = f"127.0.0.1:{running.port}"
    try:
        assert health_check(running.port) < 0.5
        for token, code in ((None, "UNAUTHENTICATED"), ("not-a-token", "UNAUTHENTICATED"),
                            (tokens["ops"], "PERMISSION_DENIED")):
            with NBAClient(target, token=token) as c:
                with pytest.raises(grpc.RpcError) as err:
                    c.next_best_action("c-1", decision_time=T0, **EMAIL)
                assert err.value.code().name == code, token
                with pytest.raises(grpc.RpcError) as err:
                    list(c.decide_many([c_request(1)]))
                assert err.value.code().name == code
        with NBAClient(target, token=tokens["email-router"]) as c:
            d = c.next_best_action("c-1", decision_time=T0, **EMAIL)
            assert c.report_outcome(d.event_id, "o", "OPENED", time=T0).event_id == d.event_id
            assert len(list(c.decide_many([c_request(2)]))) == 1
            for admin_call in (c.policy, c.reload_policy):
                with pytest.raises(grpc.RpcError) as err:
                    admin_call()
                assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
                assert "lacks the role 'admin'" in err.value.details()
        with NBAClient(target, token=tokens["ops"]) as c:
            assert c.policy().counters.decisions == 2
    finally:
        running.stop(grace=1)


def test_tls_and_mutual_tls(catalog, tmp_path, pki):
    from engine.auth import TlsFiles
    from engine.server import Security

    tls = TlsFiles(pki["server"].cert, pki["server"].key)
    running = serve(catalog, tmp_path, security=Security(tls=tls))
    try:
        with NBAClient(f"localhost:{running.port}", tls_ca=pki["ca"].cert) as c:
            assert c.next_best_action("c-1", decision_time=T0, **EMAIL).event_id
        with NBAClient(f"localhost:{running.port}", timeout=2) as plain:  # a client not speaking TLS
            with pytest.raises(grpc.RpcError) as err:
                plain.next_best_action("c-1", decision_time=T0, **EMAIL)
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(grace=1)

    mutual = TlsFiles(pki["server"].cert, pki["server"].key, client_ca=pki["ca"].cert)
    running = serve(catalog, tmp_path / "m", security=Security(tls=mutual))
    try:
        with NBAClient(f"localhost:{running.port}", tls_ca=pki["ca"].cert, tls_cert=pki["client"].cert,
                       tls_key=pki["client"].key) as c:
            assert c.next_best_action("c-1", decision_time=T0, **EMAIL).event_id
        for cert in (None, pki["stranger"]):  # no client certificate, or one another CA signed
            kwargs = dict(tls_cert=cert.cert, tls_key=cert.key) if cert else {}
            with NBAClient(f"localhost:{running.port}", timeout=2, tls_ca=pki["ca"].cert, **kwargs) as c:
                with pytest.raises(grpc.RpcError) as err:
                    c.next_best_action("c-1", decision_time=T0, **EMAIL)
                assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(grace=1)


def test_nba_serve_refuses_to_listen_beyond_this_machine_without_tls_and_tokens(tmp_path, pki):
    base = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--log-dir", str(tmp_path / "logs"),
            "--host", "0.0.0.0"]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "give --tls-cert/--tls-key and --tokens, or --insecure" in refused.stderr
    bad = subprocess.run([*base, "--tls-cert", str(pki["server"].cert)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--tls-cert and --tls-key go together" in bad.stderr
    path = tmp_path / "tokens.toml"
    path.write_text('[[client]]\nname = "x"\nsha256 = "abc"\nroles = ["decide"]\n')
    bad = subprocess.run([*base, "--tokens", str(path), "--insecure"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "client[0]: sha256 must be 64 lowercase hex digits" in bad.stderr


def test_reflection_can_be_switched_off(catalog, tmp_path):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from engine.server import Security

    running = serve(catalog, tmp_path, security=Security(reflection=False))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                               timeout=5))
            assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        running.stop(grace=1)


def _state_text(store, backend: str) -> str:
    """Everything the state holds, as text: every SQLite row, or every Redis key and value."""
    if backend == "sqlite":
        db = store._db
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for t in tables for row in db.execute(f"SELECT * FROM {t}"))
    import zlib

    r, parts = store.r, []
    for key in r.keys(f"{store.prefix}:*"):
        parts.append(key.decode())
        kind = r.type(key).decode()
        values = {"string": lambda: [r.get(key)], "hash": lambda: list(r.hgetall(key).items()),
                  "set": lambda: list(r.smembers(key)), "zset": lambda: r.zrange(key, 0, -1)}[kind]()
        for v in values:
            for b in (v if isinstance(v, tuple) else (v,)):
                try:
                    parts.append(zlib.decompress(b).decode())
                except zlib.error:
                    parts.append(b.decode(errors="replace"))
    return "\n".join(parts)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_ids_are_pseudonymous_and_a_forgotten_customer_is_unlinkable(backend, catalog, tmp_path, request):
    """Finding 10: customer ids were in clear in the logs and Redis keys, and nothing forgot a
    customer. Now neither the logs nor the state hold the id; after ForgetCustomer no log line,
    Redis key or SQLite row links to it, and its customer's outcomes are NOT_FOUND."""
    from engine.privacy import Pseudonyms

    if backend == "sqlite":
        from engine.sqlite_store import SQLiteStateStore

        store = SQLiteStateStore(tmp_path / "state.sqlite3")
    else:
        from engine.redis_store import RedisStateStore

        store = RedisStateStore(request.getfixturevalue("redis_server").url, prefix="priv")
    pseudonyms = Pseudonyms(b"a test key, not a secret of anyone")
    engine = DecisionEngine(catalog, store=store, log_dir=tmp_path / "logs", seed=3, honour_request_time=True,
                            pseudonyms=pseudonyms)
    running = start_server(engine, port=0, limits=ServerLimits(max_calls=8, max_streams=4))
    alice, bob = "alice.martin@example.com", "bob.durand@example.com"
    try:
        with NBAClient(f"127.0.0.1:{running.port}") as c:
            mine = [c.next_best_action(alice, decision_time=T0 + dt.timedelta(days=k), **EMAIL) for k in range(3)]
            for d in mine:
                c.report_outcome(d.event_id, "o", "OPENED", time=d.decision_time)
            theirs = c.next_best_action(bob, decision_time=T0, **EMAIL)
            logs = "".join(p.read_text() for p in log_files(tmp_path / "logs", "decisions"))
            state = _state_text(store, backend)
            for text in (logs, state):
                assert "alice" not in text and "bob" not in text
            lines = {json.loads(x)["EventId"]: json.loads(x) for x in logs.splitlines()}
            token = lines[mine[0].event_id]["_nba"]["customer_id"]
            assert {lines[d.event_id]["_nba"]["customer_id"] for d in mine} == {token}
            assert token in state and pseudonyms.storage_id(alice) in state
            gone = c.forget_customer(alice)
            assert gone.known and gone.pending_deleted == 3 and gone.contacts_deleted >= 1
            state = _state_text(store, backend)
            assert token not in state and pseudonyms.storage_id(alice) not in state
            assert pseudonyms.storage_id(bob) in state  # bob is untouched
            for d in mine:
                with pytest.raises(grpc.RpcError) as err:
                    c.report_outcome(d.event_id, "c", "CLICKED", time=d.decision_time)
                assert err.value.code() is grpc.StatusCode.NOT_FOUND
            assert c.report_outcome(theirs.event_id, "o", "OPENED", time=T0).event_id == theirs.event_id
            assert not c.forget_customer("nobody@example.com").known
            assert c.policy().counters.forgotten == 2
    finally:
        running.stop(grace=1)


def test_nba_forget_erases_from_a_stopped_servers_state(catalog, tmp_path):
    from engine.privacy import Pseudonyms
    from engine.sqlite_store import SQLiteStateStore

    key = tmp_path / "id.key"
    key.write_text("another test key, made for this test")
    store = SQLiteStateStore(tmp_path / "state" / "state.sqlite3")
    engine = DecisionEngine(catalog, store=store, seed=1, honour_request_time=True,
                            pseudonyms=Pseudonyms(key.read_bytes().strip()))
    from support import request

    engine.decide(request("alice", T0, consented_channels=("email",)))
    store.close()
    run = subprocess.run([sys.executable, "-m", "engine.cli", "forget", "alice", "--state-dir", str(tmp_path / "state"),
                          "--id-key-file", str(key)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "forgot 'alice': 1 contacts and 1 pending decisions deleted" in run.stdout
    again = SQLiteStateStore(tmp_path / "state" / "state.sqlite3")
    assert again.pending_count() == 0
    again.close()


def test_log_files_are_private_and_synced_and_old_ones_go(tmp_path, monkeypatch):
    """Findings 6 and 7: logs were world-readable, never fsynced and kept forever."""
    import os

    from engine.decision_log import JsonlLog

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    always = JsonlLog(tmp_path / "a", "decisions", sync="always")
    for i in range(5):
        always.append({"i": i})
    assert len(synced) == 5 and oct(always.path.stat().st_mode & 0o777) == "0o640"
    always.close()

    interval = JsonlLog(tmp_path / "b", "decisions", sync="interval")
    synced.clear()
    for i in range(100):
        interval.append({"i": i})
    time.sleep(1.5)
    assert 1 <= len(synced) <= 2  # about once a second, not once a line
    interval.close()

    old = tmp_path / "c"
    old.mkdir()
    for k in range(3):
        path = old / f"decisions-20250101T00000{k}-1-0001.jsonl"
        path.write_text("x" * 2000)
        os.utime(path, (time.time() - 40 * 86400, time.time() - 40 * 86400))
    keep = old / "outcomes-20250101T000000-1-0001.jsonl"
    keep.write_text("y")
    os.utime(keep, (time.time() - 40 * 86400,) * 2)
    log = JsonlLog(old, "decisions", max_age_days=30)
    log.append({"new": True})
    assert [p.name for p in log_files(old, "decisions")] == [log.path.name] and keep.exists()
    log.close()
    with pytest.raises(ValueError, match="log sync must be one of"):
        JsonlLog(tmp_path, "d", sync="sometimes")


@pytest.mark.slow
def test_the_channel_demo_speaks_tls_and_tokens(tmp_path, pki):
    """The Python client and nba channel-demo against a server with TLS and tokens."""
    from harness.processes import ServerProcess

    path, tokens = tokens_file(tmp_path, {"demo": ["decide", "report"]})
    server = ServerProcess(tmp_path / "logs", extra=["--honour-decision-time", "--tls-cert", str(pki["server"].cert),
                                                     "--tls-key", str(pki["server"].key), "--tokens", str(path)])
    try:
        run = subprocess.run([sys.executable, "-m", "engine.cli", "channel-demo", "--server", server.target,
                              f"--token={tokens['demo']}", "--tls-ca", str(pki["ca"].cert), "--customers", "40"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "Weekly outbound campaign over 40 customers" in run.stdout
        assert "GetPolicy -> PERMISSION_DENIED" in run.stdout  # the demo's token has no admin role
    finally:
        server.stop()
