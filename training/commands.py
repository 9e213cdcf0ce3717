"""``nba train``, ``nba evaluate`` and ``nba promote``: logs in, tables, plots and MLflow out."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import tempfile
from pathlib import Path

from engine.catalog import Catalog
from engine.settings import ConfigError
from training import registry
from training.dataset import split_time
from training.evaluate import ROW_ESTIMATORS as ESTIMATOR_COLUMNS
from training.estimators import REFITS
from training.evaluate import Evaluation, evaluate_logs, table, warnings_text
from engine.models import load_model, save_model, trained_until
from training.target_policies import Logged, ModelPolicy, target_policy
from training.parallel import ray_session
from training.train import TrainParams, train

EXPERIMENT_TRAIN = "training"
EXPERIMENT_EVAL = "evaluation"


def parse_time(text: str | None, option: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not an ISO time like 2026-01-05T00:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def check_logs(log_dir: Path) -> None:
    if not log_dir.is_dir():
        raise ConfigError(f"--logs: {log_dir} is not a directory")
    if not any(log_dir.glob("decisions-*.jsonl")):
        raise ConfigError(f"--logs: no decision logs (decisions-*.jsonl) in {log_dir}")


def result_json(evaluation: Evaluation, name: str, method: str = "normal") -> dict:
    """``{"n", "customers", "effective_sample_size", "ips": {"value","low","high"}, "snips", "dm", "dr",
    "dr_os"}`` for one policy."""
    s = evaluation.summary(name, method)
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in s.items()}


def plot(evaluation: Evaluation, path: Path, title: str, truth: dict[str, float] | None = None) -> Path:
    """Each policy's estimates with their 95 % intervals (and the truth, when known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evaluation.rounds)
    estimators = ESTIMATOR_COLUMNS
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4))
    width = 0.8 / len(estimators)
    for k, est in enumerate(estimators):
        xs = [i + (k - (len(estimators) - 1) / 2) * width for i in range(len(names))]
        s = [evaluation.summary(n)[est] for n in names]
        ax.errorbar(xs, [e["value"] for e in s], yerr=[[e["value"] - e["low"] for e in s],
                                                        [e["high"] - e["value"] for e in s]],
                    fmt="o", capsize=3, label=est)
    if truth:
        for i, n in enumerate(names):
            if n in truth:
                ax.hlines(truth[n], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                          label="truth" if i == 0 else None)
    ax.set_xticks(range(len(names)), [n[-24:] for n in names], rotation=15)
    ax.set_ylabel("value, EUR per decision")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_evaluation_metrics(evaluation: Evaluation) -> None:
    import mlflow

    metrics = {}
    for name in evaluation.rounds:
        s = evaluation.summary(name)
        key = name.replace(":", "_").replace("/", "_").replace("@", "_")
        metrics[f"{key}.n"] = s["n"]
        metrics[f"{key}.ess"] = s["effective_sample_size"]
        metrics[f"{key}.customers"] = s["customers"]
        for part in ("max_weight", "mean_weight", "zero_share", "p99"):
            metrics[f"{key}.weights.{part}"] = s["weights"][part]
        for est in ESTIMATOR_COLUMNS:
            for part in ("value", "low", "high"):
                if math.isfinite(s[est][part]):
                    metrics[f"{key}.{est}.{part}"] = s[est][part]
        mlflow.set_tag(f"{key}.reliable", str(not s["warnings"]).lower())
        if s["warnings"]:
            mlflow.set_tag(f"{key}.warnings", " | ".join(s["warnings"])[:5000])
    mlflow.log_metrics(metrics)


def _window(start, end) -> str:
    fmt = lambda t: t.isoformat() if t else "-"  # noqa: E731
    return f"{fmt(start)} .. {fmt(end)}"


def run_evaluate(log_dir: Path, catalog: Catalog, policies: list[str], after: str | None,
                 before: str | None, as_json: bool, greedy: bool, passes: int, mlflow_on: bool,
                 progress: bool, tracking_uri: str | None = None, refits: int = REFITS,
                 workers: int | None = None, ray_address: str | None = None, cache: bool = True) -> dict:
    check_logs(log_dir)
    start, end = parse_time(after, "--after"), parse_time(before, "--before")
    if mlflow_on or any(p.startswith("models:/") for p in policies):
        registry.use_tracking(tracking_uri)
    evaluated = [target_policy(p, catalog, greedy=greedy) for p in policies]
    evaluation = evaluate_logs(log_dir, catalog, evaluated, start=start, end=end, passes=passes,
                               progress=progress and not as_json, refits=refits, workers=workers,
                               ray_address=ray_address, cache=cache)
    results = {p.name: result_json(evaluation, p.name) for p in evaluated}
    if mlflow_on:
        import mlflow

        registry.use_tracking(tracking_uri, EXPERIMENT_EVAL)
        with mlflow.start_run(run_name=f"evaluate {', '.join(policies)}"):
            mlflow.log_params({"logs": str(log_dir), "policies": ",".join(policies), "after": after,
                               "before": before, "greedy": greedy, "reward_model_passes": passes,
                               "reward_model_refits": refits,
                               "catalog": catalog.version})
            log_evaluation_metrics(evaluation)
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.log_artifact(str(plot(evaluation, Path(tmp) / "estimates.png", "Off-policy estimates")))
                (Path(tmp) / "evaluation.json").write_text(json.dumps(results, indent=2))
                mlflow.log_artifact(str(Path(tmp) / "evaluation.json"))
    if as_json:
        print(json.dumps(results[evaluated[0].name] if len(evaluated) == 1 else results, indent=2))
    else:
        model_error = (f"the reward model's own error from {refits} refits" if refits
                       else "the reward model taken as fixed")
        print(f"\nOff-policy estimates, EUR per decision, 95 % intervals ({model_error}, DR-os's bias-aware; "
              f"{evaluation.n:,} decisions, {_window(start, end)}; {evaluation.report}):\n")
        print(table(evaluation))
        print(warnings_text(evaluation))
    return results


def run_train(log_dir: Path, catalog: Catalog, params: TrainParams, train_fraction: float,
              until: str | None, out: Path, name: str, register: bool, promote: bool,
              baselines: list[str], progress: bool, tracking_uri: str | None = None,
              workers: int | None = None, ray_address: str | None = None, cache: bool = True) -> dict:
    import mlflow

    check_logs(log_dir)
    cut = parse_time(until, "--until") or split_time(log_dir, train_fraction)
    on_ray = workers is not None or ray_address is not None
    with ray_session(workers, ray_address) if on_ray else contextlib.nullcontext():  # one Ray for both
        result, evaluation, incumbent = _train_and_evaluate(
            log_dir, catalog, params, cut, out, name, baselines, progress, tracking_uri, workers, ray_address, cache)
    print(f"\nEvaluated on the {evaluation.n:,} later decisions (from {cut.isoformat()}), "
          f"EUR per decision, 95 % intervals:\n")
    print(table(evaluation))
    print(warnings_text(evaluation))
    model_dir = out / "model"
    with mlflow.start_run(run_name=f"train {log_dir.name}") as run:
        mlflow.log_params({"logs": str(log_dir), "trained_until": cut.isoformat(), "catalog": catalog.version,
                           **params.as_params(catalog)})
        mlflow.log_metrics({"train.decisions": result.decisions, "train.examples": result.examples,
                            "train.seconds": result.seconds, "train.examples_per_second": result.examples_per_second,
                            "eval.seconds": evaluation.seconds})
        log_evaluation_metrics(evaluation)
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
        mlflow.log_artifact(str(plot(evaluation, out / "estimates.png", "Candidate vs incumbent, later logs")))
        version = None
        if register:
            version = registry.register(run.info.run_id, run.info.artifact_uri, name,
                                        {"trained_until": cut.isoformat(), "dr": evaluation.summary("candidate")["dr"]["value"]})
            mlflow.set_tag("registered_version", f"{name}/{version}")
        decision = registry.decide_promotion(f"{name}/{version}" if version else "candidate",
                                             evaluation.summary("candidate")["dr"], incumbent,
                                             evaluation.summary(incumbent)["dr"], evaluation.n,
                                             evaluation.summary("candidate")["effective_sample_size"])
        if promote and version:
            registry.record_promotion(name, version, decision)
        mlflow.set_tag("promotion_reason", decision.reason)
    print(f"\nmodel: {model_dir}; MLflow run {run.info.run_id}"
          + (f"; registered as {name} version {version}" if version else ""))
    if promote and version:
        print(("PROMOTED: " if decision.promoted else "not promoted: ") + decision.reason)
    else:
        print("would " + ("" if decision.promoted else "not ") + "be promoted: " + decision.reason)
    return {"version": version, "promoted": promote and version is not None and decision.promoted,
            "reason": decision.reason, "examples_per_second": result.examples_per_second}


def _train_and_evaluate(log_dir: Path, catalog: Catalog, params: TrainParams, cut, out: Path, name: str,
                        baselines: list[str], progress: bool, tracking_uri: str | None, workers: int | None,
                        ray_address: str | None, cache: bool):
    """``nba train``'s work: the candidate trained before ``cut`` and saved under ``out``, then
    evaluated on the decisions from ``cut`` on beside the incumbent and the baselines."""
    result = train(log_dir, catalog, params, end=cut, progress=progress, workers=workers, ray_address=ray_address,
                   cache=cache)
    model_dir = save_model(out / "model", result.model.serialize(), result.settings,
                           {"trained_until": cut.isoformat(),
                            "decisions": result.decisions, "catalog": catalog.version})
    print(f"trained on {result.decisions:,} decisions before {cut.isoformat()} "
          f"({params.passes} pass{'es' if params.passes > 1 else ''}): {result.examples:,} examples in "
          f"{result.seconds:.1f} s = {result.examples_per_second:,.0f} examples/s; {result.report}")
    registry.use_tracking(tracking_uri, EXPERIMENT_TRAIN)
    incumbent_version = registry.champion_version(name)
    candidate = ModelPolicy("candidate", load_model(model_dir, catalog, "candidate"), catalog.exploration)
    policies = [candidate, Logged()] + [target_policy(b, catalog) for b in baselines]
    incumbent = "logged"
    if incumbent_version is not None:
        incumbent = f"models:/{name}/{incumbent_version}"
        policies.append(target_policy(incumbent, catalog))
    evaluation = evaluate_logs(log_dir, catalog, policies, start=cut, progress=progress, workers=workers,
                               ray_address=ray_address, cache=cache)
    return result, evaluation, incumbent


def run_promote(log_dir: Path, catalog: Catalog, candidate_uri: str, after: str | None, progress: bool,
                tracking_uri: str | None = None, cache: bool = True) -> bool:
    import mlflow

    check_logs(log_dir)
    registry.use_tracking(tracking_uri, EXPERIMENT_EVAL)
    name, _, _ = registry.parse_model_uri(candidate_uri)
    version = registry.resolve_version(candidate_uri)
    incumbent_version = registry.champion_version(name)
    if incumbent_version == version:
        print(f"{name}/{version} is already the champion")
        return False
    local, label = registry.download_version(name, version)
    start = parse_time(after, "--after")
    if start is None:
        start = trained_until(local)
        if start is not None:
            print(f"evaluating on decisions from {start.isoformat()}, where {label}'s training data "
                  "ends (--after to choose another start)")
    candidate = target_policy(f"models:/{name}/{version}", catalog, resolve=lambda _: (local, label))
    policies = [candidate, Logged()]
    incumbent = "logged"
    if incumbent_version is not None:
        incumbent = f"models:/{name}/{incumbent_version}"
        policies.append(target_policy(incumbent, catalog))
    evaluation = evaluate_logs(log_dir, catalog, policies, start=start, progress=progress, cache=cache)
    print(table(evaluation))
    print(warnings_text(evaluation))
    decision = registry.decide_promotion(f"{name}/{version}", evaluation.summary(candidate.name)["dr"],
                                         incumbent, evaluation.summary(incumbent)["dr"], evaluation.n,
                                         evaluation.summary(candidate.name)["effective_sample_size"])
    with mlflow.start_run(run_name=f"promote {name}/{version}"):
        mlflow.log_params({"logs": str(log_dir), "candidate": f"{name}/{version}", "incumbent": incumbent,
                           "after": after})
        log_evaluation_metrics(evaluation)
        mlflow.set_tag("promotion_reason", decision.reason)
        mlflow.set_tag("promoted", str(decision.promoted))
    registry.record_promotion(name, version, decision)
    print(("PROMOTED: " if decision.promoted else "not promoted: ") + decision.reason)
    return decision.promoted
