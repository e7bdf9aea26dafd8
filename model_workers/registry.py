"""MLflow: log and register both models, move the champion alias, load the current champions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_workers.ensemble import Calibration
from tickwatch.features import MODEL_FEATURES
from tickwatch.settings import Settings

log = logging.getLogger(__name__)


def use_tracking(settings: Settings):
    """Point MLflow at the configured tracking store (telemetry off); returns a client."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "1"
    os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    if settings.mlflow_tracking_uri.startswith("sqlite"):
        settings.mlflow_artifact_dir.mkdir(parents=True, exist_ok=True)
        if mlflow.get_experiment_by_name(settings.mlflow.experiment) is None:
            mlflow.create_experiment(
                settings.mlflow.experiment, artifact_location=settings.mlflow_artifact_dir.as_uri()
            )
    mlflow.set_experiment(settings.mlflow.experiment)
    return mlflow.MlflowClient()


@dataclass(frozen=True)
class LoadedModel:
    """One registered model version ready to score: the object and its calibration metadata."""

    name: str
    version: str
    model: Any
    calibration: Calibration
    metadata: dict[str, Any]


def model_metadata(cal: Calibration, **extra: Any) -> dict[str, Any]:
    """What a scorer needs beside the weights: features, threshold, median, extras."""
    return {
        "features": list(MODEL_FEATURES),
        "threshold": cal.threshold,
        "median": cal.median,
        **extra,
    }


def log_iforest(
    pipe: Any,
    cal: Calibration,
    settings: Settings,
    example: np.ndarray,
    detector: dict[str, Any] | None = None,
) -> str:
    """Log and register the forest (with the fitted detector) in the active run; returns the new
    version."""
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature

    from model_workers.models.iforest import iforest_scores

    info = mlflow.sklearn.log_model(
        pipe,
        name="iforest",
        serialization_format="cloudpickle",
        signature=infer_signature(example, iforest_scores(pipe, example)),
        registered_model_name=settings.mlflow.iforest_model_name,
        metadata=model_metadata(cal, kind="iforest", detector=detector or {}),
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
    )
    return str(info.registered_model_version)


def log_lstm(
    scorer: Any, cal: Calibration, scale: np.ndarray, settings: Settings, example: np.ndarray
) -> str:
    """Log and register the autoencoder scorer in the active run; returns the new version."""
    import mlflow.tensorflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    info = mlflow.tensorflow.log_model(
        scorer,
        name="lstm_ae",
        signature=infer_signature(example, np.asarray(scorer.predict_on_batch(example))),
        registered_model_name=settings.mlflow.lstm_model_name,
        metadata=model_metadata(
            cal,
            kind="lstm_ae",
            sequence_length=int(example.shape[1]),
            error_scale=[float(v) for v in scale],
        ),
        pip_requirements=[f"tensorflow-cpu=={tf.__version__}"],
    )
    return str(info.registered_model_version)


def champion_versions(settings: Settings) -> tuple[str, str] | None:
    """(forest version, autoencoder version) the champion alias points at, or None if unset."""
    from mlflow.exceptions import MlflowException

    client = use_tracking(settings)
    alias = settings.mlflow.champion_alias
    try:
        forest, lstm = (
            str(client.get_model_version_by_alias(name, alias).version)
            for name in (settings.mlflow.iforest_model_name, settings.mlflow.lstm_model_name)
        )
    except MlflowException:
        return None
    return forest, lstm


def set_champion(settings: Settings, iforest_version: str, lstm_version: str) -> None:
    """Point the champion alias of both registered models at these versions."""
    client = use_tracking(settings)
    alias = settings.mlflow.champion_alias
    client.set_registered_model_alias(settings.mlflow.iforest_model_name, alias, iforest_version)
    client.set_registered_model_alias(settings.mlflow.lstm_model_name, alias, lstm_version)
    log.info(
        "champion: %s v%s, %s v%s",
        settings.mlflow.iforest_model_name,
        iforest_version,
        settings.mlflow.lstm_model_name,
        lstm_version,
    )


def load_version(settings: Settings, name: str, version: str, kind: str) -> LoadedModel:
    """Load one registered model version with its calibration metadata."""
    import mlflow

    use_tracking(settings)
    uri = f"models:/{name}/{version}"
    meta = mlflow.models.get_model_info(uri).metadata or {}
    if kind == "iforest":
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(uri)
    else:
        import mlflow.tensorflow

        from model_workers.models.lstm_ae import configure_tensorflow

        configure_tensorflow()
        model = mlflow.tensorflow.load_model(uri)
    if list(meta.get("features", [])) != list(MODEL_FEATURES):
        raise ValueError(
            f"{uri} was trained on features {meta.get('features')}, "
            f"this code computes {list(MODEL_FEATURES)}"
        )
    cal = Calibration(float(meta["threshold"]), float(meta["median"]))
    return LoadedModel(name, str(version), model, cal, dict(meta))


def load_pair(settings: Settings, versions: tuple[str, str]) -> tuple[LoadedModel, LoadedModel]:
    """The forest and autoencoder at the given versions."""
    return (
        load_version(settings, settings.mlflow.iforest_model_name, versions[0], "iforest"),
        load_version(settings, settings.mlflow.lstm_model_name, versions[1], "lstm_ae"),
    )
