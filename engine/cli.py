"""The ``nba`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engine.catalog import MODEL_STRUCTURES, load_catalog
from engine.config import ConfigError


def _add_engine_options(p: argparse.ArgumentParser) -> None:
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


def _build_engine(args):
    from engine.engine import DecisionEngine

    catalog = load_catalog(args.catalog)
    model = None
    if args.model:
        from training.policies import load_model

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

    engine = _build_engine(args)
    follower = None
    if args.model_uri:
        from engine.model_source import ModelFollower

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


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def cmd_train(args) -> int:
    from training.commands import run_train
    from training.train import TrainParams

    catalog = load_catalog(args.catalog)
    interactions = tuple(p.strip() for p in args.interactions.split(",")) if args.interactions else None
    params = TrainParams(passes=args.passes, learning_rate=args.learning_rate, interactions=interactions,
                         cb_type=args.cb_type, bits=args.bits, power_t=args.power_t,
                         importance_weighted=args.importance_weighted, structure=args.structure)
    try:
        params.settings(catalog)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    run_train(args.logs, catalog, params, args.train_fraction, args.until, args.out, args.name,
              not args.no_register, args.promote, baselines, not args.no_progress, args.tracking_uri)
    return 0


def cmd_evaluate(args) -> int:
    from training.commands import run_evaluate

    catalog = load_catalog(args.catalog)
    run_evaluate(args.logs, catalog, args.policy, args.after, args.before, args.json, args.greedy,
                 args.reward_passes, not args.no_mlflow, not args.no_progress, args.tracking_uri)
    return 0


def cmd_promote(args) -> int:
    from training.commands import run_promote

    catalog = load_catalog(args.catalog)
    run_promote(args.logs, catalog, args.candidate, args.after, not args.no_progress, args.tracking_uri)
    return 0


def cmd_channel_demo(args) -> int:
    from engine.demo import run_demo

    return run_demo(args)


def cmd_simulate(args) -> int:
    from simulators.simulate import simulate

    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    result = simulate(args.scenario, customers=args.customers, days=args.days, policies=policies,
                      seed=args.seed, out=args.out, engine_url=args.engine_url,
                      mlflow=not args.no_mlflow, progress=not args.no_progress, redis_url=args.redis,
                      engine_model=args.engine_model, regret=args.regret, catalog_set=args.set,
                      logs=not args.no_logs)
    _print_simulation(result)
    return 0


def cmd_demo(args) -> int:
    from simulators.simulate import simulate

    print("Quick simulation of the default scenario: the engine against the marketer's rules, "
          "the same without incentives (newsletter), random, no contact and the oracle.\n", flush=True)
    result = simulate("default", customers=args.customers, days=args.days, seed=args.seed,
                      out=args.out, mlflow=True, progress=True)
    _print_simulation(result)
    return 0


def cmd_calibrate(args) -> int:
    from simulators.calibration import TARGETS, calibrate, report

    figures = calibrate(args.scenario, customers=args.customers, seed=args.seed)
    print(report(figures))
    off = [k for k, (low, high, _) in TARGETS.items() if not low <= figures[k] <= high]
    return 1 if off else 0


def _print_simulation(result: dict) -> None:
    from simulators.report import open_rate_table, table

    meta = result["meta"]
    print(f"\nScenario {meta['scenario']}: {meta['customers']:,} customers, {meta['days']} days, "
          f"seed {meta['seed']} (net value = incremental, EUR)"
          + (f"; catalog set: {meta['catalog_set']}" if meta.get("catalog_set") else "") + "\n")
    print(table(result["results"]))
    opens = open_rate_table(result["results"])
    if opens:
        print("\nOpen rate by channel (deliveries in brackets), and at the rules' mix of channels:\n")
        print(opens)
    if any(result.get("budgets", {}).values()):
        from simulators.report import budget_table

        print("\n" + budget_table(result["budgets"]))
    if result.get("regret"):
        from simulators.regret import table as regret_table

        print("\nExpected value of the oracle's choice and of each policy's, and what the gap is made of (EUR):\n")
        print(regret_table(result["regret"]))
    print(f"\nResults: {result['out'] / 'results.json'}")
    for path in result["artifacts"][1:]:
        print(f"Plot:    {path}")
    if result.get("logs"):
        print(f"Engine decision and outcome logs (DSJSON): {result['logs']}")
    if result["mlflow_run_id"]:
        print(f"MLflow run {result['mlflow_run_id']} in mlruns/ (see it with: "
              ".venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db)")


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
    serve.add_argument("--model-uri", default=None, metavar="models:/NAME@ALIAS",
                       help="serve a registered model and follow its alias, e.g. "
                            "models:/nba-policy@champion (reloaded when the alias moves)")
    serve.add_argument("--poll-seconds", type=float, default=30.0,
                       help="how often to look up --model-uri (default 30; ReloadPolicy checks at once)")
    serve.add_argument("--tracking-uri", default=None,
                       help="MLflow tracking URI (default: sqlite:///mlruns/mlflow.db)")
    serve.set_defaults(func=cmd_serve)

    train_p = sub.add_parser("train", help="train a candidate policy from logs, evaluate it on later "
                                            "logs, record it in MLflow, register (and promote) it")
    train_p.add_argument("--logs", type=Path, required=True, help="directory of decision and outcome logs")
    train_p.add_argument("--catalog", type=Path, default=None, help="catalog the logs were made with")
    train_p.add_argument("--train-fraction", type=float, default=0.7,
                         help="train on this earliest share of the decisions, evaluate on the rest (default 0.7)")
    train_p.add_argument("--until", default=None, help="train on decisions before this ISO time instead")
    train_p.add_argument("--passes", type=int, default=1, help="passes over the training logs (default 1)")
    train_p.add_argument("--learning-rate", type=float, default=None, help="default: the catalog's")
    train_p.add_argument("--interactions", default=None,
                         help="comma-separated namespace pairs, e.g. UO,UC,UT (default: the catalog's)")
    train_p.add_argument("--cb-type", default=None, choices=("mtr", "dm", "ips", "dr"),
                         help="VW contextual-bandit reduction (default: the catalog's)")
    train_p.add_argument("--bits", type=int, default=None, help="feature hash bits (default: the catalog's)")
    train_p.add_argument("--power-t", type=float, default=None,
                         help="learning-rate decay, VW's --power_t (default: the catalog's)")
    train_p.add_argument("--importance-weighted", default=None, type=_yes_no,
                         help="yes/no: weigh mtr examples by 1/p (default: the catalog's)")
    train_p.add_argument("--structure", default=None, choices=MODEL_STRUCTURES,
                         help="how values are modelled (default: the catalog's model.structure)")
    train_p.add_argument("--baselines", default="uniform,rules",
                         help="also evaluate these built-in policies (default uniform,rules)")
    train_p.add_argument("--out", type=Path, default=Path("runs/train"), help="where the model is written")
    train_p.add_argument("--name", default="nba-policy", help="registered model name (default nba-policy)")
    train_p.add_argument("--no-register", action="store_true", help="do not register the model")
    train_p.add_argument("--promote", action="store_true",
                         help="make it the champion if its DR lower bound beats the champion's estimate")
    train_p.add_argument("--tracking-uri", default=None)
    train_p.add_argument("--no-progress", action="store_true")
    train_p.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="estimate policies' value from logs (IPS, SNIPS, DM, DR, DR-OS)")
    ev.add_argument("--logs", type=Path, required=True, help="directory of decision and outcome logs")
    ev.add_argument("--policy", action="append", required=True,
                    help="logged, uniform, rules, no_contact, a model file/directory, or "
                         "models:/NAME@ALIAS | models:/NAME/VERSION (repeatable)")
    ev.add_argument("--catalog", type=Path, default=None, help="catalog the logs were made with")
    ev.add_argument("--after", default=None, help="only decisions at or after this ISO time")
    ev.add_argument("--before", default=None, help="only decisions before this ISO time")
    ev.add_argument("--greedy", action="store_true", help="models choose their best action (no exploration)")
    ev.add_argument("--reward-passes", type=int, default=1, help="passes of the reward model (default 1)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.add_argument("--no-mlflow", action="store_true", help="do not record an MLflow run")
    ev.add_argument("--tracking-uri", default=None)
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("promote", help="make a registered version the champion if it beats the current one")
    pr.add_argument("--logs", type=Path, required=True, help="logs to compare them on")
    pr.add_argument("--candidate", required=True, help="models:/NAME/VERSION (or @ALIAS)")
    pr.add_argument("--catalog", type=Path, default=None)
    pr.add_argument("--after", default=None, help="only decisions at or after this ISO time")
    pr.add_argument("--tracking-uri", default=None)
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(func=cmd_promote)

    demo = sub.add_parser("demo", help="a quick simulation of the default scenario (the main job)")
    demo.add_argument("--customers", type=int, default=10_000)
    demo.add_argument("--days", type=int, default=42)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.set_defaults(func=cmd_demo)

    cdemo = sub.add_parser("channel-demo", help="start a server, drive it as a channel system, stop it")
    cdemo.add_argument("--log-dir", type=Path, default=None,
                       help="where the demo server logs (default: a temporary directory)")
    cdemo.add_argument("--customers", type=int, default=1000, help="customers in the campaign")
    cdemo.add_argument("--seed", type=int, default=7)
    cdemo.set_defaults(func=cmd_channel_demo)

    sim = sub.add_parser("simulate", help="run policies against the customer simulator")
    sim.add_argument("--scenario", default="default",
                     help="scenario file, or a shipped one: default, cold_start, high_fatigue, ...")
    sim.add_argument("--customers", type=int, default=None, help="customers (default: the scenario's)")
    sim.add_argument("--days", type=int, default=None, help="simulated days (default: the scenario's)")
    sim.add_argument("--policies", default="engine,rules,newsletter,random,no_contact,oracle",
                     help="comma-separated: engine, engine_grpc, rules, newsletter (the rules without "
                          "incentives: the no-discount offer), random, no_contact, oracle, "
                          "engine_exact (a diagnostic: the engine learning the exact expected value of "
                          "each of its choices instead of the reward reported), "
                          "oracle_unbudgeted (the oracle not held to the incentive budgets), "
                          "observable_oracle (a diagnostic: the best decisions from CRM data alone), "
                          "observable_oracle_responses (the same, with the customers' responses), "
                          "oracle_blind_TRAITS (the oracle knowing TRAITS -- hour, affinity, organic, motivation, "
                          "engagement joined by '+', or all -- only as well as the CRM record and the responses "
                          "to its own decisions tell them), "
                          "or package.module:factory for your own")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--out", type=Path, default=Path("runs/latest"), help="output directory")
    sim.add_argument("--engine-url", default=None,
                     help="for engine_grpc: a running `nba serve --honour-decision-time` "
                          "(default: start one)")
    sim.add_argument("--redis", default=None, metavar="URL",
                     help="the in-process engine keeps caps, budgets and pending decisions in this "
                          "Redis (default: in memory)")
    sim.add_argument("--engine-model", type=Path, default=None, metavar="PATH",
                     help="the in-process engine starts from this trained model (an `nba train` "
                          "model directory or a VW model file) instead of an empty one")
    sim.add_argument("--regret", action="store_true",
                     help="split each policy's expected regret against the oracle's choice by what it got wrong "
                          "(missed or needless contact, offer, channel, send slot)")
    sim.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                     help="set a catalog key for this run, on top of the scenario's (repeatable; the value "
                          "is TOML: --set exploration.epsilon=0.05 --set 'model.structure=\"open_funnel\"')")
    sim.add_argument("--no-mlflow", action="store_true", help="do not record an MLflow run")
    sim.add_argument("--no-logs", action="store_true",
                     help="do not keep the in-process engine's DSJSON logs (~8 KB a decision) "
                          "in OUT/logs")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=cmd_simulate)

    cal = sub.add_parser("calibrate", help="check a scenario against the figures from the field")
    cal.add_argument("--scenario", default="default")
    cal.add_argument("--customers", type=int, default=20_000)
    cal.add_argument("--seed", type=int, default=1)
    cal.set_defaults(func=cmd_calibrate)

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


if __name__ == "__main__":
    sys.exit(main())
