"""``nba simulate``: run policies on a scenario, print the table, write results, plots, MLflow."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import signal
from pathlib import Path

from tqdm import tqdm

from engine.catalog import MODEL_STRUCTURES
from engine.settings import ConfigError
from engine.value_model import ValueModel
from simulators import report
from simulators.information_bound import PREFIX as BLIND_PREFIX
from simulators.information_bound import InformationBound, parse_blind
from simulators.regret import RegretBreakdown
from simulators.policies import (EnginePolicy, ExactRewardPolicy, MarketerRules, Newsletter,
                                 NoContact, ObservableOracle, Oracle, RandomPolicy)
from simulators.runner import Simulation, policy_seed
from simulators.scenario import Scenario, load_scenario, parse_catalog_settings

BUILTIN = ("engine", "engine@STRUCTURE", "engine_grpc", "engine_exact", "rules", "newsletter", "random", "no_contact", "oracle",
           "oracle_unbudgeted", "observable_oracle", "observable_oracle_responses", "oracle_blind_TRAITS")
DEFAULT_POLICIES = ("engine", "rules", "newsletter", "random", "no_contact", "oracle")


class UnknownPolicy(ConfigError):
    """A policy name that is neither built in nor ``package.module:factory``."""

    def __init__(self, name: str, why: str = ""):
        super().__init__(f"--policies: {why or f'unknown policy {name!r}'}; built-in: {', '.join(BUILTIN)}, "
                         "or package.module:factory")


@contextlib.contextmanager
def policy_by_name(name: str, scenario: Scenario, seed: int, out: Path, engine_url: str | None,
                redis_url: str | None = None, engine_model: ValueModel | None = None, logs: bool = True):
    """Yield a policy by name: a built-in one, or ``package.module:factory`` for your own
    (``factory(scenario=..., seed=...)`` must return an object with name, decide and learn).
    ``redis_url``: the in-process engine keeps its state (caps, budgets, pending decisions) in
    that Redis, under a prefix of its own, instead of in memory. ``engine_model``: the in-process
    engine starts from this trained model (see ``load_engine_model``) instead of an empty one,
    and keeps learning online from it. ``logs``: the in-process engine writes its DSJSON logs to
    ``out/logs`` (~8 KB a decision)."""
    if name == "engine":
        yield from _engine(scenario, seed, out, redis_url, engine_model, logs)
    elif name.startswith("engine@"):
        structure = engine_structure(name)
        if engine_model is not None:
            raise ConfigError(f"--engine-model starts the policy 'engine' only, not {name!r}")
        catalog = dataclasses.replace(scenario.catalog, model=dataclasses.replace(scenario.catalog.model,
                                                                                  structure=structure))
        yield from _engine(dataclasses.replace(scenario, catalog=catalog), seed, out, redis_url, None, logs,
                           name=name, log_dir=f"logs-{structure}")
    elif name == "engine_exact":
        policy = ExactRewardPolicy.create(scenario.catalog, policy_seed(seed))
        try:
            yield policy
        finally:
            policy.engine.close()
    elif name == "engine_grpc":
        yield from _grpc_engine(scenario, seed, out, engine_url)
    elif name.startswith(BLIND_PREFIX):
        yield InformationBound(parse_blind(name), scenario.catalog.constraints, seed=policy_seed(seed), name=name)
    elif name in SIMULATED:
        yield SIMULATED[name](scenario, policy_seed(seed))
    elif ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownPolicy(name, f"cannot load {name!r}: {exc}") from None
        yield factory(scenario=scenario, seed=seed)
    else:
        raise UnknownPolicy(name)


# The simulator's own policies: name -> factory(scenario, policy seed).
SIMULATED = {
    "rules": lambda sc, seed: MarketerRules(),
    "newsletter": lambda sc, seed: Newsletter(sc.catalog.offers),
    "random": lambda sc, seed: RandomPolicy(seed),
    "no_contact": lambda sc, seed: NoContact(),
    "oracle": lambda sc, seed: Oracle(sc.catalog.constraints),
    "oracle_unbudgeted": lambda sc, seed: Oracle(name="oracle_unbudgeted"),
    "observable_oracle": lambda sc, seed: ObservableOracle(seed),
    "observable_oracle_responses": lambda sc, seed: ObservableOracle(seed, responses=True),
}


def _engine(scenario: Scenario, seed: int, out: Path, redis_url: str | None, engine_model: ValueModel | None,
            logs: bool, name: str = "engine", log_dir: str = "logs"):
    """The engine in process, its state in memory or in Redis under a prefix of its own, its
    logs in ``out/log_dir``."""
    from engine.pipeline import DecisionEngine

    store = None
    if redis_url:
        import uuid

        from engine.redis_store import RedisStateStore

        store = RedisStateStore(redis_url, prefix=f"sim-{uuid.uuid4().hex[:8]}")
        if not store.ping():
            raise ConfigError(f"--redis: no Redis answers at {redis_url}")
    engine = DecisionEngine(scenario.catalog, store=store, log_dir=out / log_dir if logs else None,
                            seed=policy_seed(seed), honour_request_time=True, model=engine_model)
    try:
        yield EnginePolicy.in_process(engine, name)
    finally:
        engine.close()
        if store is not None:
            store.close()


def load_engine_model(path: Path, scenario: Scenario) -> ValueModel:
    """The model the engine starts from (an ``nba train`` model directory or a VW model file),
    loaded before any policy runs."""
    from engine.models import load_model

    try:
        return load_model(path, scenario.catalog)
    except ConfigError as exc:
        raise ConfigError(f"--engine-model: {exc}") from None


def _grpc_engine(scenario: Scenario, seed: int, out: Path, engine_url: str | None):
    from engine.client import NBAClient
    from engine.server import start_server_process

    proc = None
    if engine_url is None:
        catalog_args = [] if scenario.catalog.source.endswith("default_catalog.toml") else \
            ["--catalog", scenario.catalog.source]
        proc, port = start_server_process(out / "logs-grpc", policy_seed(seed),
                                          ["--honour-decision-time", *catalog_args])
        engine_url = f"127.0.0.1:{port}"
    client = NBAClient(engine_url, timeout=30)
    try:
        client.wait_ready(30)
        yield EnginePolicy.over_grpc(client)
    finally:
        client.close()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def simulate(scenario: str | Path = "default", customers: int | None = None, days: int | None = None,
             policies: tuple[str, ...] = DEFAULT_POLICIES, seed: int = 1, out: Path = Path("runs/latest"),
             engine_url: str | None = None, mlflow: bool = True, progress: bool = True,
             plots: bool = True, redis_url: str | None = None, engine_model: Path | None = None,
             regret: bool = False, catalog_set: list[str] | None = None, logs: bool = True) -> dict:
    """``regret``: also split each policy's expected regret against the oracle's choice by
    what it got wrong (``simulators.regret``), into the results, the JSON and a plot.
    ``catalog_set``: catalog keys set on top of the scenario's, ``TABLE.KEY=VALUE`` (a TOML
    value), e.g. ``exploration.epsilon=0.05``; the rest of each table is kept. ``logs``: keep the
    in-process engine's DSJSON decision and outcome logs under ``out/logs``."""
    sc = load_scenario(scenario, parse_catalog_settings(catalog_set or []))
    check_policies(policies)
    model = None
    if engine_model is not None:
        if "engine" not in policies:
            raise ConfigError("--engine-model is for the in-process engine: add 'engine' to the policies")
        model = load_engine_model(engine_model, sc)
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulation(sc, customers=customers, days=days, seed=seed)
    runs, traces, breakdowns = {}, {}, {}
    per_policy = len(sim.opportunities()) * sim.customers
    with tqdm(total=per_policy * len(policies), unit="decision", unit_scale=True, disable=not progress,
              desc="simulating") as bar:
        for done, name in enumerate(policies, start=1):
            with policy_by_name(name, sc, seed, out, engine_url, redis_url, model, logs) as policy:
                bar.set_description(f"simulating {policy.name}")
                observer = None
                if regret:
                    observer = breakdowns[policy.name] = RegretBreakdown()
                runs[policy.name] = sim.run(policy, progress=bar.update, observer=observer)
                if getattr(policy, "budget_trace", None):
                    traces[policy.name] = policy.budget_trace
            # Unreachable customers are not decided for: move the bar to its true end for this policy.
            bar.n = per_policy * done
            bar.refresh()
    meta = {"scenario": sc.name, "scenario_file": sc.source, "catalog": sc.catalog.version,
            "customers": sim.customers, "days": sim.days, "seed": seed}
    if engine_model is not None:
        meta["engine_model"] = str(engine_model)
    if catalog_set:
        meta["catalog_set"] = " ".join(catalog_set)
    return _report(sc, meta, policies, runs, traces, breakdowns, out, plots, mlflow, logs)


def engine_structure(name: str) -> str:
    """``engine@funnel`` -> "funnel", a known ``[model] structure``."""
    structure = name.partition("@")[2]
    if structure not in MODEL_STRUCTURES:
        raise UnknownPolicy(name, f"{name!r}: no model structure {structure!r} (known: {', '.join(MODEL_STRUCTURES)})")
    return structure


def check_policies(policies: tuple[str, ...]) -> None:
    """Fail before any policy runs on a name that is neither built in nor ``module:factory``."""
    for name in policies:
        if name.startswith(BLIND_PREFIX):
            parse_blind(name)
        elif name.startswith("engine@"):
            engine_structure(name)
        elif name not in BUILTIN and ":" not in name:
            raise UnknownPolicy(name)


def _report(sc: Scenario, meta: dict, policies: tuple[str, ...], runs: dict, traces: dict, breakdowns: dict,
            out: Path, plots: bool, mlflow: bool, logs: bool) -> dict:
    """The run's metrics, ``results.json``, plots and MLflow run."""
    results = {name: report.policy_metrics(run, sc.catalog.reward) for name, run in runs.items()}
    report.add_oracle_comparison(results)
    report.add_rules_mix_open_rate(results)
    budgets = {name: report.budget_periods(trace) for name, trace in traces.items()}
    results_path = out / "results.json"
    daily = {name: [round(float(v), 2) for v in run.daily_value] for name, run in runs.items()}
    report.write_json(results_path, meta, results, budgets, daily,
                      {name: b.to_json() for name, b in breakdowns.items()})
    artifacts = [results_path] + (report.plot(out, runs, results, traces, breakdowns) if plots else [])
    result = {"meta": {**meta, "policies": ",".join(policies)}, "results": results, "budgets": budgets,
              "regret": breakdowns, "artifacts": artifacts, "mlflow_run_id": None, "out": out,
              "logs": out / "logs" if logs and "engine" in policies else None}
    if mlflow:
        result["mlflow_run_id"] = record_mlflow(result)
    return result


def record_mlflow(result: dict) -> str:
    """Record a simulation's result (``simulate``'s) as an MLflow run; returns the run id."""
    return report.log_mlflow(result["meta"], result["results"], result["artifacts"])
