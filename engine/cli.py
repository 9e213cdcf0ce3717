"""The serving commands of ``nba`` (``serve``, ``channel-demo``), and the runner every package's
commands share (``nba.cli`` gathers them).

``python -m engine.cli serve ...`` runs the server alone, without the offline packages.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.catalog import load_catalog
from engine.settings import ConfigError

Commands = Callable[[argparse._SubParsersAction], None]


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
    p.add_argument("--redis", default=None, metavar="URL",
                   help="share caps, budgets and pending decisions through Redis, "
                        "e.g. redis://127.0.0.1:6379/0 (default: in memory, one process)")
    p.add_argument("--redis-cluster", action="store_true",
                   help="the --redis address is a node of a Redis Cluster")
    p.add_argument("--redis-prefix", default="nba", help="key prefix in Redis (default: nba)")


def build_engine(args):
    from engine.pipeline import DecisionEngine

    catalog = load_catalog(args.catalog)
    model = None
    if args.model:
        from engine.models import load_model

        model = load_model(args.model, catalog)
    store = None
    if args.redis:
        from engine.redis_store import RedisStateStore

        try:
            store = RedisStateStore(args.redis, cluster=args.redis_cluster, prefix=args.redis_prefix)
        except ValueError as exc:
            raise ConfigError(f"--redis: {exc}") from None
        if not store.ping():
            logging.getLogger("nba").warning(
                "redis at %s is unreachable: deciding in safe mode (no contact) until it answers",
                args.redis)
    return DecisionEngine(catalog, store=store, model=model, log_dir=args.log_dir, seed=args.seed,
                          honour_request_time=args.honour_decision_time)


def cmd_serve(args) -> int:
    from engine.server import serve_forever, start_server

    engine = build_engine(args)
    follower = None
    if args.model_uri:
        from engine.model_follower import ModelFollower

        if args.model:
            raise ConfigError("give --model or --model-uri, not both")
        try:
            follower = ModelFollower(engine, engine.catalog, args.model_uri, args.poll_seconds,
                                     args.tracking_uri)
        except ValueError as exc:
            raise ConfigError(f"--model-uri/--poll-seconds: {exc}") from None
    try:
        running = start_server(engine, host=args.host, port=args.port, workers=args.workers,
                               max_message_bytes=args.max_message_bytes, follower=follower)
    except ConfigError:
        raise
    except Exception as exc:
        if follower is None:
            raise
        raise ConfigError(f"--model-uri {args.model_uri}: cannot load it: {exc}") from None
    state = f"state in {args.redis}" if args.redis else "state in memory"
    print(f"nba: serving nba.v1.DecisionService on {args.host}:{running.port} "
          f"(catalog {engine.catalog.version}, model {engine.model.version}, logs in {args.log_dir}, "
          f"{state})", flush=True)
    serve_forever(running, grace=args.grace)
    return 0


def cmd_channel_demo(args) -> int:
    from engine.channel_demo import run_demo

    return run_demo(args)


def add_commands(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the gRPC decision service")
    add_engine_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=50051, help="port (0 = any free port)")
    serve.add_argument("--workers", type=int, default=8, help="gRPC worker threads (default 8)")
    serve.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024,
                       help="largest request or response accepted (default 4 MiB)")
    serve.add_argument("--grace", type=float, default=10.0,
                       help="seconds in-flight calls get to finish on SIGTERM (default 10)")
    serve.add_argument("--model-uri", default=None, metavar="models:/NAME@ALIAS",
                       help="serve a registered model and follow its alias, e.g. "
                            "models:/nba-policy@champion (reloaded when the alias moves)")
    serve.add_argument("--poll-seconds", type=float, default=30.0,
                       help="how often to look up --model-uri (default 30; ReloadPolicy checks at once)")
    serve.add_argument("--tracking-uri", default=None,
                       help="MLflow tracking URI (default: sqlite:///mlruns/mlflow.db)")
    serve.set_defaults(func=cmd_serve)

    cdemo = sub.add_parser("channel-demo", help="start a server, drive it as a channel system would, stop it")
    cdemo.add_argument("--log-dir", type=Path, default=None,
                       help="where the demo server logs (default: a temporary directory)")
    cdemo.add_argument("--customers", type=int, default=1000, help="customers in the campaign")
    cdemo.add_argument("--seed", type=int, default=7)
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
