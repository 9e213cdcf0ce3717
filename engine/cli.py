"""The ``nba`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engine.catalog import CatalogError, load_catalog


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", type=Path, default=None,
                   help="catalog TOML file (default: the shipped default catalog)")
    p.add_argument("--log-dir", type=Path, default=Path("nba-logs"),
                   help="directory for DSJSON decision and outcome logs (default: nba-logs)")
    p.add_argument("--model", type=Path, default=None,
                   help="VW model file to start from (default: a cold-start model)")
    p.add_argument("--seed", type=int, default=None, help="seed exploration and event ids")
    p.add_argument("--honour-decision-time", action="store_true",
                   help="use decision_time / outcome time from requests (simulation, tests)")


def _build_engine(args):
    from engine.engine import DecisionEngine
    from engine.value_model import ValueModel

    catalog = load_catalog(args.catalog)
    model = ValueModel.from_file(catalog.model, args.model) if args.model else None
    return DecisionEngine(catalog, model=model, log_dir=args.log_dir, seed=args.seed,
                          honour_request_time=args.honour_decision_time)


def cmd_serve(args) -> int:
    from engine.server import serve_forever, start_server

    engine = _build_engine(args)
    running = start_server(engine, host=args.host, port=args.port, workers=args.workers,
                           max_message_bytes=args.max_message_bytes)
    print(f"nba: serving nba.v1.DecisionService on {args.host}:{running.port} "
          f"(catalog {engine.catalog.version}, logs in {args.log_dir})", flush=True)
    serve_forever(running, grace=args.grace)
    return 0


def cmd_demo(args) -> int:
    from engine.demo import run_demo

    return run_demo(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nba", description="Next-best-action decisioning engine")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC decision service")
    _add_engine_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=50051, help="port (0 = any free port)")
    serve.add_argument("--workers", type=int, default=8, help="gRPC worker threads (default 8)")
    serve.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024,
                       help="largest request or response accepted (default 4 MiB)")
    serve.add_argument("--grace", type=float, default=10.0,
                       help="seconds in-flight calls get to finish on SIGTERM (default 10)")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="start a server, drive it as a channel system, stop it")
    demo.add_argument("--log-dir", type=Path, default=None,
                      help="where the demo server logs (default: a temporary directory)")
    demo.add_argument("--customers", type=int, default=1000, help="customers in the campaign")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except CatalogError as exc:
        print(f"nba: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"nba: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
