"""The serving commands of ``nba`` (``serve``, ``channel-demo``), and the runner every package's
commands share (``nba.cli`` gathers them).

``python -m engine.cli serve ...`` runs the server alone, without the offline packages.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.catalog import load_catalog
from engine.settings import ConfigError

Commands = Callable[[argparse._SubParsersAction], None]


def add_redis_options(p: argparse.ArgumentParser, about: str, required: bool = False) -> None:
    """--redis, --redis-cluster and --redis-prefix, as ``redis_store`` reads them."""
    p.add_argument("--redis", required=required, default=None, metavar="URL", help=about)
    p.add_argument("--redis-cluster", action="store_true", help="the --redis address is a node of a Redis Cluster")
    p.add_argument("--redis-prefix", default="nba", help="key prefix in Redis (default: nba)")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", type=Path, default=None,
                   help="catalog TOML file (default: the shipped default catalog)")
    p.add_argument("--log-dir", type=Path, default=Path("nba-logs"),
                   help="directory for DSJSON decision and outcome logs (default: nba-logs)")
    p.add_argument("--model", type=Path, default=None,
                   help="VW model file or model directory to start from (default: a cold-start model)")
    p.add_argument("--seed", type=int, default=None, help="seed exploration and event ids")
    p.add_argument("--honour-decision-time", action="store_true",
                   help="use decision_time / outcome time from requests (simulation, tests)")
    add_redis_options(p, "share caps, budgets and pending decisions through Redis, "
                         "e.g. redis://127.0.0.1:6379/0 (default: in memory, one process)")
    p.add_argument("--require-durable", action="store_true",
                   help="refuse to start on a Redis that does not persist every write (appendonly no)")
    p.add_argument("--state-dir", type=Path, default=Path("nba-state"),
                   help="without --redis: caps, budgets and pending decisions in STATE_DIR/state.sqlite3; "
                        "always: the model checkpoint and, without --id-key-file, the id key (default: nba-state)")
    p.add_argument("--state-durable", action="store_true",
                   help="SQLite state: fsync every transaction (survives a power loss, not only a crash)")
    p.add_argument("--id-key-file", type=Path, default=None,
                   help="key pseudonymising customer ids in the state and logs (default: $NBA_ID_KEY, else "
                        "STATE_DIR/id.key, made on first start)")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0,
                   help="save what the model learned online this often, and on shutdown (default 60)")
    p.add_argument("--log-sync", choices=("always", "interval", "never"), default="interval",
                   help="fsync the logs after every line, about every second, or never (default interval)")
    p.add_argument("--log-max-age-days", type=float, default=0.0,
                   help="delete log files older than this at rotation (default 0: keep)")
    p.add_argument("--log-max-total-mb", type=float, default=0.0,
                   help="delete the oldest log files beyond this size at rotation (default 0: keep)")


def redis_store(args):
    """The state store at --redis (--redis-cluster, --redis-prefix)."""
    from engine.redis_store import RedisStateStore

    try:
        return RedisStateStore(args.redis, cluster=args.redis_cluster, prefix=args.redis_prefix)
    except ValueError as exc:
        raise ConfigError(f"--redis: {exc}") from None


def build_engine(args):
    """The engine of ``nba serve``: its state in SQLite under --state-dir, or in Redis; ids
    pseudonymised; logs synced and kept as asked."""
    from engine.pipeline import DecisionEngine
    from engine.privacy import Pseudonyms, load_key

    catalog = load_catalog(args.catalog)
    model = None
    if args.model:
        from engine.models import load_model

        model = load_model(args.model, catalog)
    store = None
    if args.redis:
        store = redis_store(args)
        if not store.ping():
            logging.getLogger("nba").warning(
                "redis at %s is unreachable: deciding in safe mode (no contact) until it answers",
                args.redis)
        problem = store.durability_problem()
        if problem and getattr(args, "require_durable", False):
            raise ConfigError(f"--require-durable: {problem}")
        if problem:
            logging.getLogger("nba").warning("%s; run it with appendonly yes (--require-durable refuses to "
                                             "start without it)", problem)
    else:
        from engine.sqlite_store import SQLiteStateStore

        store = SQLiteStateStore(args.state_dir / "state.sqlite3", durable=args.state_durable)
    engine = DecisionEngine(catalog, store=store, model=model, log_dir=args.log_dir, seed=args.seed,
                            honour_request_time=args.honour_decision_time,
                            pseudonyms=Pseudonyms(load_key(args.id_key_file, args.state_dir)), log_sync=args.log_sync)
    for log in (engine.decision_log, engine.outcome_log):
        log.max_age_days, log.max_total_bytes = args.log_max_age_days, int(args.log_max_total_mb * 2**20)
    return engine


def server_limits(args):
    from engine.guards import ServerLimits

    try:
        return ServerLimits(max_calls=args.max_calls, max_streams=args.max_streams,
                            stream_idle_seconds=args.stream_idle_seconds, stream_max_seconds=args.stream_max_seconds,
                            stream_max_requests=args.stream_max_requests, rate_per_client=args.rate_per_client)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def server_security(args):
    """TLS, tokens and reflection from the options; a server reachable beyond this machine must
    have both TLS and tokens, unless --insecure says otherwise."""
    from engine.auth import TlsFiles, load_tokens
    from engine.server import Security

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    tokens = load_tokens(args.tokens) if args.tokens else None
    loopback = args.host in ("127.0.0.1", "localhost", "::1", "[::1]")
    if not loopback and (tls is None or tokens is None) and not args.insecure:
        raise ConfigError(f"--host {args.host} is reachable beyond this machine: give --tls-cert/--tls-key and "
                          "--tokens, or --insecure to serve without them")
    return Security(tls=tls, tokens=tokens, reflection=not args.no_reflection)


def cmd_serve(args) -> int:
    if args.processes < 1:
        raise ConfigError(f"--processes must be >= 1, got {args.processes}")
    if args.processes > 1:
        if not args.redis:
            raise ConfigError(f"--processes {args.processes} needs --redis: the embedded SQLite state (--state-dir) "
                              "belongs to one process; several processes share caps, budgets and pending "
                              "decisions through Redis")
        from engine.workers import serve_processes

        return serve_processes(args)
    from engine.server import serve_forever

    running = start_serving(args)
    metrics = (f"; metrics on http://{args.host}:{running.metrics_http.server_port}/metrics"
               if running.metrics_http is not None else "")
    print(f"nba: serving nba.v1.DecisionService on {args.host}:{running.port} ({describe(args, running.engine)}"
          f"{metrics})", flush=True)
    serve_forever(running, grace=args.grace)
    return 0


def describe(args, engine) -> str:
    state = f"state in {args.redis}" if args.redis else f"state in {args.state_dir / 'state.sqlite3'}"
    if getattr(args, "follow_learner", False):
        state += ", following nba learn's model"
    return (f"catalog {engine.catalog.version}, model {engine.model.version}, logs in {args.log_dir}, {state}")


def start_serving(args, *, reuse_port: bool = False, learner: bool = True):
    """Build the engine and start its server as the options say (``nba serve``, and each process
    of ``nba serve --processes N``: ``reuse_port`` shares the port with the others; only the
    ``learner`` matures decisions, learns and saves the model checkpoint, which the others follow)."""
    from engine.server import start_server

    limits, security = server_limits(args), server_security(args)
    metrics = None
    if args.metrics_port is not None:  # (a --processes child: written for the parent to serve)
        from engine.metrics import Metrics

        metrics = Metrics()
    engine = build_engine(args)
    engine.learns = learner and not args.follow_learner
    follower, checkpoint = None, None
    if args.follow_learner:
        follower = learner_follower(args, engine)
    elif args.redis and learner:
        refuse_beside_a_learner(engine.store)
    if args.model_uri:
        from engine.model_follower import ModelFollower

        if args.model:
            raise ConfigError("give --model or --model-uri, not both")
        try:
            poll = 30.0 if args.poll_seconds is None else args.poll_seconds
            follower = ModelFollower(engine, engine.catalog, args.model_uri, poll, args.tracking_uri)
        except ValueError as exc:
            raise ConfigError(f"--model-uri/--poll-seconds: {exc}") from None
    if not args.follow_learner:
        from engine.checkpoint import ModelCheckpoint

        try:
            checkpoint = ModelCheckpoint(args.state_dir, engine, args.checkpoint_seconds, follow=not learner)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    try:
        return start_server(engine, host=args.host, port=args.port, limits=limits, security=security,
                            max_message_bytes=args.max_message_bytes, follower=follower, checkpoint=checkpoint,
                            reuse_port=reuse_port, metrics=metrics,
                            metrics_port=None if reuse_port else args.metrics_port)
    except ConfigError:
        raise
    except Exception as exc:
        if follower is None:
            raise
        raise ConfigError(f"--model-uri {args.model_uri}: cannot load it: {exc}") from None


def learner_follower(args, engine):
    """``--follow-learner``: the replica serves what ``nba learn`` publishes and learns nothing."""
    from engine.shared_model import LearnerFollower, ModelChannel

    if not args.redis:
        raise ConfigError("--follow-learner needs --redis: the learner publishes its model there")
    if args.model_uri:
        raise ConfigError("give --follow-learner or --model-uri, not both")
    poll = 2.0 if args.poll_seconds is None else args.poll_seconds
    return LearnerFollower(engine, ModelChannel(engine.store), poll)


def refuse_beside_a_learner(store) -> None:
    """A replica that learns would take matured decisions from the learner of its prefix."""
    from engine.shared_model import ModelChannel
    from engine.state import StoreUnavailable

    try:
        holder = ModelChannel(store).learner()
    except StoreUnavailable:
        return
    if holder is not None:
        raise ConfigError(f"a learner ({holder}, nba learn) learns for --redis-prefix {store.prefix!r}: start "
                          "this server with --follow-learner, or it would learn apart from it")


def cmd_learn(args) -> int:
    """``nba learn``: the one learner of the replicas on a Redis prefix (engine.shared_model)."""
    import signal
    import threading

    from engine.pipeline import DecisionEngine
    from engine.shared_model import Learner, ModelChannel
    from engine.state import StoreUnavailable

    catalog = load_catalog(args.catalog)
    model = None
    if args.model:
        from engine.models import load_model

        model = load_model(args.model, catalog)
    store = redis_store(args)
    engine = DecisionEngine(catalog, store=store, model=model)
    learner = Learner(engine, ModelChannel(store), args.publish_seconds, args.publish_examples)
    try:
        learner.start()
    except StoreUnavailable as exc:
        raise OSError(f"{exc} (the learner needs it to start)") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    every = f"every {args.publish_seconds:g} s" + (f" or {args.publish_examples} decisions"
                                                   if args.publish_examples else "")
    print(f"nba: learning for the replicas on {args.redis} (prefix {args.redis_prefix!r}), from "
          f"{engine.model.version}; publishing {every}", flush=True)
    learner.run(stop, args.mature_seconds)
    print(f"nba: stopped; published {learner.published.version if learner.published else 'nothing'}", flush=True)
    return 0


def cmd_forget(args) -> int:
    """Erase a customer: through a running server (--server), or in the state directly when no
    server runs (--state-dir or --redis, with the servers' id key)."""
    if args.server:
        from engine.client import NBAClient

        with NBAClient(args.server, token=args.token, tls_ca=args.tls_ca) as client:
            gone = client.forget_customer(args.customer_id)
        contacts, pending, released, known = gone.contacts_deleted, gone.pending_deleted, gone.released, gone.known
    else:
        from engine.privacy import Pseudonyms, load_key

        if args.redis:
            store = redis_store(args)
        else:
            from engine.sqlite_store import SQLiteStateStore

            path = args.state_dir / "state.sqlite3"
            if not path.exists():
                raise ConfigError(f"--state-dir {args.state_dir}: no state.sqlite3 there")
            store = SQLiteStateStore(path)
        try:
            sid = Pseudonyms(load_key(args.id_key_file, args.state_dir)).storage_id(args.customer_id)
            gone = store.forget(sid)
        finally:
            store.close()
        contacts, pending, released, known = gone.contacts, gone.pending, gone.released_cents / 100, gone.had_state
    print(f"forgot {args.customer_id!r}: {contacts} contacts and {pending} pending decisions deleted, "
          f"{released:.2f} EUR of commitments released" if known else
          f"nothing held of {args.customer_id!r}: nothing to forget")
    return 0


def cmd_channel_demo(args) -> int:
    from engine.channel_demo import run_demo

    return run_demo(args)


def cmd_token(args) -> int:
    from engine.auth import KNOWN_ROLES, new_token, token_digest

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    bad = [r for r in roles if r not in KNOWN_ROLES]
    if not roles or bad:
        raise ConfigError(f"--roles: expected roles from {list(KNOWN_ROLES)}, got {args.roles!r}")
    token = new_token()
    print(f"token of {args.name} (give it to that client only: it is stored nowhere):\n  {token}\n\n"
          f"its entry in the server's --tokens file:\n"
          f"[[client]]\nname = {json.dumps(args.name)}\nsha256 = \"{token_digest(token)}\"\n"
          f"roles = {json.dumps(roles)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    token = sub.add_parser("token", help="make a bearer token for a client, and its --tokens file entry")
    token.add_argument("name", help="the client's name (logs, rate limits)")
    token.add_argument("--roles", required=True, help="comma-separated: decide, report, admin")
    token.set_defaults(func=cmd_token)

    forget = sub.add_parser("forget", help="erase a customer: its state, pending decisions and the link from "
                                           "its logged decisions")
    forget.add_argument("customer_id")
    forget.add_argument("--server", default=None, metavar="HOST:PORT",
                        help="a running nba serve to ask (ForgetCustomer, role admin)")
    forget.add_argument("--token", default=None, help="with --server: an admin token")
    forget.add_argument("--tls-ca", type=Path, default=None, help="with --server: the CA of its TLS certificate")
    forget.add_argument("--state-dir", type=Path, default=Path("nba-state"),
                        help="without --server: the state directory of a stopped server (default nba-state)")
    add_redis_options(forget, "without --server: the servers' Redis")
    forget.add_argument("--id-key-file", type=Path, default=None,
                        help="the servers' id key (default: $NBA_ID_KEY, else STATE_DIR/id.key)")
    forget.set_defaults(func=cmd_forget)

    serve = sub.add_parser("serve", help="run the gRPC decision service")
    add_engine_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=50051, help="port (0 = any free port)")
    serve.add_argument("--processes", type=int, default=1,
                       help="server processes sharing the port (SO_REUSEPORT), one core each; more than 1 needs "
                            "--redis (default 1)")
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="serve Prometheus metrics at http://HOST:PORT/metrics (0 = any free port; default: "
                            "no metrics)")
    limits = serve.add_argument_group("limits (each protects the server from one caller)")
    limits.add_argument("--max-calls", type=int, default=64,
                        help="calls served at once, one thread each; beyond: RESOURCE_EXHAUSTED (default 64)")
    limits.add_argument("--max-streams", type=int, default=16,
                        help="NextBestActions streams open at once, fewer than --max-calls so that health "
                             "checks and unary calls always have threads (default 16)")
    limits.add_argument("--stream-idle-seconds", type=float, default=60.0,
                        help="a stream that sends nothing this long is closed (default 60)")
    limits.add_argument("--stream-max-seconds", type=float, default=3600.0,
                        help="a stream open this long is closed (default 3600)")
    limits.add_argument("--stream-max-requests", type=int, default=10_000_000,
                        help="requests one stream may carry (default 10 000 000)")
    limits.add_argument("--rate-per-client", type=float, default=0.0,
                        help="requests a second per client (token or address); 0: no limit (default)")
    sec = serve.add_argument_group("security")
    sec.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain: serve over TLS")
    sec.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    sec.add_argument("--tls-client-ca", type=Path, default=None,
                     help="PEM CA: mutual TLS, clients must present a certificate it signed")
    sec.add_argument("--tokens", type=Path, default=None,
                     help="tokens file (TOML): bearer tokens and their roles, decide / report / admin "
                          "(see `nba token`); without it, no authentication")
    sec.add_argument("--no-reflection", action="store_true", help="do not serve gRPC server reflection")
    sec.add_argument("--insecure", action="store_true",
                     help="allow a --host beyond this machine without TLS and tokens")
    serve.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024,
                       help="largest request or response accepted (default 4 MiB)")
    serve.add_argument("--grace", type=float, default=10.0,
                       help="seconds in-flight calls get to finish on SIGTERM (default 10)")
    serve.add_argument("--model-uri", default=None, metavar="models:/NAME@ALIAS",
                       help="serve a registered model and follow its alias, e.g. "
                            "models:/nba-policy@champion (reloaded when the alias moves)")
    serve.add_argument("--poll-seconds", type=float, default=None,
                       help="how often to look up --model-uri (default 30) or the learner's model (default 2); "
                            "ReloadPolicy checks at once")
    serve.add_argument("--follow-learner", action="store_true",
                       help="with --redis: serve the model `nba learn` publishes there and learn nothing here")
    serve.add_argument("--tracking-uri", default=None,
                       help="MLflow tracking URI (default: sqlite:///mlruns/mlflow.db)")
    serve.set_defaults(func=cmd_serve)

    learn = sub.add_parser("learn", help="the one learner of the replicas on a Redis: learn every matured "
                                         "decision, publish the model to them (nba serve --follow-learner)")
    add_redis_options(learn, "the replicas' Redis", required=True)
    learn.add_argument("--catalog", type=Path, default=None, help="the replicas' catalog (default: the shipped one)")
    learn.add_argument("--model", type=Path, default=None,
                       help="start from this model when nothing is published yet (default: cold start)")
    learn.add_argument("--publish-seconds", type=float, default=10.0,
                       help="publish the model this often when it learned since (default 10)")
    learn.add_argument("--publish-examples", type=int, default=0,
                       help="also publish after this many new decisions learned (default 0: by time only)")
    learn.add_argument("--mature-seconds", type=float, default=1.0,
                       help="look for matured decisions this often (default 1)")
    learn.set_defaults(func=cmd_learn)

    cdemo = sub.add_parser("channel-demo", help="start a server, drive it as a channel system would, stop it")
    cdemo.add_argument("--log-dir", type=Path, default=None,
                       help="where the demo server logs (default: a temporary directory)")
    cdemo.add_argument("--customers", type=int, default=1000, help="customers in the campaign")
    cdemo.add_argument("--seed", type=int, default=7)
    cdemo.add_argument("--server", default=None, metavar="HOST:PORT",
                       help="drive this running server (started with --honour-decision-time) instead of one of "
                            "its own")
    cdemo.add_argument("--token", default=None, help="with --server: a bearer token (roles decide, report)")
    cdemo.add_argument("--tls-ca", type=Path, default=None, help="with --server: the CA of its TLS certificate")
    cdemo.set_defaults(func=cmd_channel_demo)


def yes_no(text: str) -> bool:
    """An argparse type: yes/no (true/false, 1/0)."""
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def run(argv: list[str] | None, commands: Sequence[Commands],
        description: str = "Next-best-action decisioning engine") -> int:
    """Parse ``argv`` with the given packages' commands and run the one asked for. A mistake in
    the configuration or the options exits with 2 and a one-line message, an unreadable file
    or an MLflow failure with 1."""
    parser = argparse.ArgumentParser(prog="nba", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in commands:
        add(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (ConfigError, ValueError) as exc:
        print(f"nba: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"nba: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__name__ != "MlflowException":
            raise
        print(f"nba: MLflow: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    return run(argv, [add_commands])


if __name__ == "__main__":
    sys.exit(main())
