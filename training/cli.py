"""The offline commands of ``nba``: ``train``, ``evaluate``, ``promote``."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.catalog import MODEL_STRUCTURES, load_catalog
from engine.cli import yes_no
from engine.settings import ConfigError
from training.estimators import REFITS


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
              not args.no_register, args.promote, baselines, not args.no_progress, args.tracking_uri,
              workers=args.workers, ray_address=args.ray_address, cache=not args.no_cache)
    return 0


def cmd_evaluate(args) -> int:
    from training.commands import run_evaluate

    catalog = load_catalog(args.catalog)
    run_evaluate(args.logs, catalog, args.policy, args.after, args.before, args.json, args.greedy,
                 args.reward_passes, not args.no_mlflow, not args.no_progress, args.tracking_uri,
                 refits=args.refits, workers=args.workers, ray_address=args.ray_address, cache=not args.no_cache)
    return 0


def cmd_promote(args) -> int:
    from training.commands import run_promote

    catalog = load_catalog(args.catalog)
    run_promote(args.logs, catalog, args.candidate, args.after, not args.no_progress, args.tracking_uri,
                cache=not args.no_cache)
    return 0


def _refits(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--refits must be an integer, got {text!r}") from None
    if value < 0 or value == 1:
        raise argparse.ArgumentTypeError(f"--refits must be 0 (none) or at least 2, got {value}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--workers must be >= 1, got {value}")
    return value


def add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true",
                   help="read the logs without their Parquet cache (LOGS/.nba-cache/, made on first read and "
                        "read instead of the logs while they are unchanged)")


def add_ray_options(p: argparse.ArgumentParser) -> None:
    add_cache_option(p)
    p.add_argument("--workers", type=_workers, default=None,
                   help="run on a local Ray of this many CPUs, with the same results (default: in this process)")
    p.add_argument("--ray-address", default=None,
                   help="run on this Ray cluster instead (auto on one of its nodes, or ray://HEAD:10001)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
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
    ev.add_argument("--refits", type=_refits, default=REFITS,
                    help=f"bootstrap refits of the reward model whose spread widens the intervals of the "
                         f"estimators that use it (default {REFITS}; 0: the model taken as fixed, faster)")
    add_ray_options(ev)
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
    add_cache_option(pr)
    pr.set_defaults(func=cmd_promote)


def _add_train(sub: argparse._SubParsersAction) -> None:
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
    train_p.add_argument("--importance-weighted", default=None, type=yes_no,
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
    add_ray_options(train_p)
    train_p.add_argument("--no-progress", action="store_true")
    train_p.set_defaults(func=cmd_train)
