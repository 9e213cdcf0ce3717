"""MLflow: tracking of training and evaluation runs, the model registry, and promotion.

Tracking defaults to ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``
(see them with ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``). A model version
holds a model directory (``model.vw`` + ``model.json``, see ``training.policies.save_model``);
the ``champion`` alias names the version servers load (``nba serve --model-uri
models:/<name>@champion``).

Promotion rule: the candidate becomes champion only when the *lower* end of its 95 % DR
interval beats the champion's DR estimate on the same logged decisions (with no champion yet:
the logging policy's, i.e. what production did). Every decision, promoted or not, is recorded:
as tags on the candidate's model version and in an MLflow run.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_NAME = "nba-policy"
CHAMPION = "champion"
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def default_tracking_uri(root: Path = Path("mlruns")) -> str:
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root.resolve()}/mlflow.db"


def use_tracking(tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at the tracking store (default: ``mlruns/``) and, if given, the experiment
    (created with its artifacts under ``mlruns/artifacts``). Returns the tracking URI."""
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    if experiment is not None:
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=str((Path("mlruns") / "artifacts").resolve()))
        mlflow.set_experiment(experiment)
    return uri


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """models:/name@alias or models:/name/version -> (name, alias, version)."""
    m = _MODEL_URI.match(uri)
    if m is None:
        raise ValueError(f"model URI {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return m["name"], m["alias"], m["version"]


def resolve_version(uri: str) -> str:
    """The registered version a models:/ URI names now (an alias moves)."""
    from mlflow import MlflowClient

    name, alias, version = parse_model_uri(uri)
    if alias is not None:
        return MlflowClient().get_model_version_by_alias(name, alias).version
    return MlflowClient().get_model_version(name, version).version


def download(uri: str) -> tuple[Path, str]:
    """(local model directory, "name/version") of a models:/ URI."""
    name, _, _ = parse_model_uri(uri)
    return download_version(name, resolve_version(uri))


def download_version(name: str, version: str) -> tuple[Path, str]:
    """(local model directory, "name/version") of one registered version."""
    import mlflow

    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}")
    return Path(local), f"{name}/{version}"


def register(run_id: str, artifact_uri: str, name: str = DEFAULT_MODEL_NAME, tags: dict | None = None) -> str:
    """Register a run's ``model`` artifact directory as a new version; returns the version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="NBA engine value model (VW cb_adf)")
    mv = client.create_model_version(name, source=f"{artifact_uri}/model", run_id=run_id,
                                     tags={k: str(v) for k, v in (tags or {}).items()})
    return mv.version


def champion_version(name: str = DEFAULT_MODEL_NAME) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION).version
    except MlflowException:
        return None


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    candidate: str
    candidate_low: float
    candidate_value: float
    incumbent: str
    incumbent_value: float
    n: int
    reason: str


def decide_promotion(candidate: str, candidate_dr: dict, incumbent: str, incumbent_dr: dict,
                     n: int) -> PromotionDecision:
    """Promote only when the candidate's DR lower bound beats the incumbent's DR estimate."""
    low, value = candidate_dr["low"], candidate_dr["value"]
    bar = incumbent_dr["value"]
    promoted = math.isfinite(low) and low > bar
    verdict = "beats" if promoted else "does not beat"
    reason = (f"candidate {candidate}: DR lower 95% bound {low:.4f} {verdict} {incumbent}'s DR "
              f"estimate {bar:.4f} EUR/decision on the same {n:,} logged decisions "
              f"(candidate estimate {value:.4f})")
    return PromotionDecision(promoted, candidate, low, value, incumbent, bar, n, reason)


def record_promotion(name: str, version: str, decision: PromotionDecision) -> None:
    """Tag the candidate version with the decision and, if promoted, move the alias."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(name, version, "promotion", "promoted" if decision.promoted else "rejected")
    client.set_model_version_tag(name, version, "promotion_reason", decision.reason)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
