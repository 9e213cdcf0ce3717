"""Model directories and the MLflow registry, as a server reads them.

A model directory holds ``model.vw`` (the VW workspace) and ``model.json`` (the settings it was
trained with, and when its training data ends). Registered versions are such directories;
``models:/name@alias`` names the version an alias points to now (``nba serve --model-uri``
follows it). Registering and promoting versions is ``training.registry``'s.

Tracking defaults to ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

from engine.catalog import Catalog, ModelSettings, RewardDefinition
from engine.settings import ConfigError
from engine.funnel_model import FunnelModel
from engine.value_model import ValueModel

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")

MODEL_FILE = "model.vw"
SETTINGS_FILE = "model.json"


def new_model(settings: ModelSettings, data: bytes | None = None, version: str = "cold-start",
              updates: int = 0, reward: RewardDefinition | None = None) -> ValueModel | FunnelModel:
    """The model of ``settings.structure``: cold, or from its bytes (``serialize``). ``reward``:
    the catalog's reward definition (the funnel model's penalties)."""
    if settings.structure == "funnel":
        model = FunnelModel(settings, model_data=data, version=version, reward=reward)
    else:
        model = ValueModel(settings, model_data=data, version=version)
    model.updates = updates
    return model


def like(model, data: bytes, version: str, updates: int = 0) -> ValueModel | FunnelModel:
    """A model of the same kind and settings as ``model`` from other bytes."""
    return new_model(model.settings, data, version, updates, getattr(model, "reward", None))


def save_model(directory: Path, model_bytes: bytes, settings: ModelSettings, info: dict) -> Path:
    """A model directory: the VW model and the settings it was trained with."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(model_bytes)
    (directory / SETTINGS_FILE).write_text(json.dumps(
        {"cb_type": settings.cb_type, "learning_rate": settings.learning_rate,
         "interactions": list(settings.interactions), "bits": settings.bits,
         "power_t": settings.power_t, "importance_weighted": settings.importance_weighted,
         "structure": settings.structure, **info}, indent=2))
    return directory


def trained_until(model_dir: Path) -> dt.datetime | None:
    """When a model directory's training data ends (its settings file), if it says."""
    try:
        return dt.datetime.fromisoformat(json.loads((model_dir / SETTINGS_FILE).read_text())["trained_until"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_model(path: str | Path, catalog: Catalog, version: str | None = None) -> ValueModel:
    """A VW model from a model directory (with its settings), or a bare model file (read with
    the catalog's model settings)."""
    path = Path(path)
    settings = catalog.model
    if path.is_dir():
        meta = path / SETTINGS_FILE
        if meta.exists():
            try:
                saved = json.loads(meta.read_text())
                settings = ModelSettings(cb_type=saved["cb_type"], learning_rate=saved["learning_rate"],
                                         interactions=tuple(saved["interactions"]), bits=saved["bits"],
                                         power_t=float(saved.get("power_t", ModelSettings.power_t)),
                                         importance_weighted=bool(saved.get("importance_weighted", True)),
                                         structure=str(saved.get("structure", "direct")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{meta}: not a model settings file ({exc})") from None
        path = path / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"no VW model at {path}")
    try:
        return new_model(settings, path.read_bytes(), version=version or f"file:{path.name}", reward=catalog.reward)
    except Exception as exc:  # VW raises its own error types
        raise ConfigError(f"{path}: not a VW model for these settings ({exc})") from None



# -- the registry ------------------------------------------------------------------------------


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
