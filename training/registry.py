"""MLflow: registering trained models, and promotion.

A model version holds a model directory (``model.vw`` + ``model.json``, see
``engine.models.save_model``); the ``champion`` alias names the version servers load (``nba
serve --model-uri models:/<name>@champion``). Looking versions up and downloading them is
``engine.models``' (a server needs it); tracking defaults to ``mlruns/`` (see it with
``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``).

Promotion rule: the candidate becomes champion only when the *lower* end of its 95 % DR
interval beats the champion's DR estimate on the same logged decisions (with no champion yet:
the logging policy's, i.e. what production did). Every decision, promoted or not, is recorded:
as tags on the candidate's model version and in an MLflow run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.models import download, download_version, parse_model_uri, resolve_version, use_tracking

__all__ = ["download", "download_version", "parse_model_uri", "resolve_version", "use_tracking",
           "register", "champion_version", "decide_promotion", "record_promotion", "PromotionDecision"]

DEFAULT_MODEL_NAME = "nba-policy"
CHAMPION = "champion"


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


# A promotion acts on the candidate's estimate only when the logged decisions are worth at least
# this many on-policy ones (the effective sample size of its importance weights).
PROMOTION_MIN_ESS = 1000


def decide_promotion(candidate: str, candidate_dr: dict, incumbent: str, incumbent_dr: dict,
                     n: int, ess: float | None = None) -> PromotionDecision:
    """Promote only when the candidate's DR lower bound beats the incumbent's DR estimate, and
    the candidate's effective sample size (``ess``, when given) is at least PROMOTION_MIN_ESS."""
    low, value = candidate_dr["low"], candidate_dr["value"]
    bar = incumbent_dr["value"]
    if ess is not None and not ess >= PROMOTION_MIN_ESS:
        reason = (f"candidate {candidate}: effective sample size {ess:,.0f} of {n:,} logged decisions is under "
                  f"{PROMOTION_MIN_ESS:,}: its estimate ({value:.4f}, DR lower bound {low:.4f}) is not trusted "
                  "enough to act on; log more decisions near the candidate's choices")
        return PromotionDecision(False, candidate, low, value, incumbent, bar, n, reason)
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
