"""MLflow: log and register both models, move the champion alias, load the current champions.

No model is stored or loaded with pickle, so whoever can write a model version cannot run code in
the score worker or the API: the forest is stored with skops and loaded with this module's own
trusted-type list (never the list an artifact declares), the autoencoder in Keras' native format
loaded in safe mode. An artifact stored any other way is refused (UntrustedModel).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detection.ensemble import Calibration
from tickwatch.features import MODEL_FEATURES
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
# the types a stored forest may hold beyond those skops trusts by itself (sklearn estimators and
# numpy/scipy containers): the trees' compiled arrays
TRUSTED_SKOPS_TYPES = ("sklearn.tree._tree.Tree",)
KERAS_MODEL_FILE = "model.keras"  # what mlflow.tensorflow writes under the flavor's data folder


class UntrustedModel(ValueError):
    """A registry artifact not stored as skops (forest) or native Keras (autoencoder)."""


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
    import skops
    from mlflow.models import infer_signature

    from detection.models.iforest import iforest_scores

    info = mlflow.sklearn.log_model(
        pipe,
        name="iforest",
        serialization_format="skops",
        skops_trusted_types=list(TRUSTED_SKOPS_TYPES),
        signature=infer_signature(example, iforest_scores(pipe, example)),
        registered_model_name=settings.mlflow.iforest_model_name,
        metadata=model_metadata(cal, kind="iforest", detector=detector or {}),
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"],
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


# What the registry answers when a model or its alias does not exist (the alias is unset); any
# other MlflowException (connection refused, a timeout, a server error) is an outage.
UNSET_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def champion_pair(settings: Settings) -> tuple[str, str] | None:
    """(forest version, autoencoder version) the champion alias points at, or None if unset.

    Raises MlflowException when the registry cannot answer: an outage is not "no champion" (the
    training gate would promote anything, the API would say no model is registered).
    """
    from mlflow.exceptions import MlflowException

    client = use_tracking(settings)
    alias = settings.mlflow.champion_alias
    try:
        forest, lstm = (
            str(client.get_model_version_by_alias(name, alias).version)
            for name in (settings.mlflow.iforest_model_name, settings.mlflow.lstm_model_name)
        )
    except MlflowException as exc:
        if exc.error_code in UNSET_CODES:
            return None
        raise
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
    """Load one registered model version with its calibration metadata, without pickle;
    UntrustedModel if it is stored any other way than skops (forest) or native Keras."""
    import mlflow

    use_tracking(settings)
    uri = f"models:/{name}/{version}"
    meta = mlflow.models.get_model_info(uri).metadata or {}
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    model = load_forest(local, uri) if kind == "iforest" else load_autoencoder(local, uri)
    if list(meta.get("features", [])) != list(MODEL_FEATURES):
        raise ValueError(
            f"{uri} was trained on features {meta.get('features')}, "
            f"this code computes {list(MODEL_FEATURES)}"
        )
    cal = Calibration(float(meta["threshold"]), float(meta["median"]))
    return LoadedModel(name, str(version), model, cal, dict(meta))


def _flavor(local: Path, flavor: str, uri: str) -> dict[str, Any]:
    from mlflow.models import Model

    flavors = Model.load(local).flavors
    if flavor not in flavors:
        raise UntrustedModel(f"{uri} has no {flavor} flavor (it has {sorted(flavors)})")
    return flavors[flavor]


def load_forest(local: Path, uri: str = "") -> Any:
    """The sklearn pipeline of a downloaded model folder, from skops with TRUSTED_SKOPS_TYPES."""
    import skops.io

    conf = _flavor(local, "sklearn", uri)
    fmt = conf.get("serialization_format")
    path = local / str(conf.get("pickled_model", ""))
    if fmt != "skops" or path.suffix != ".skops" or not path.is_file():
        raise UntrustedModel(
            f"{uri} is stored as {fmt!r}, not skops: refused (pickle can run code on load); "
            "register it again with `tickwatch train`"
        )
    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_SKOPS_TYPES))
    if untrusted:
        raise UntrustedModel(f"{uri} holds types tickwatch does not trust: {untrusted}")
    return skops.io.load(path, trusted=list(TRUSTED_SKOPS_TYPES))


def load_autoencoder(local: Path, uri: str = "") -> Any:
    """The Keras scorer of a downloaded model folder, from the native format in safe mode."""
    import keras

    from detection.models.lstm_ae import configure_tensorflow

    conf = _flavor(local, "tensorflow", uri)
    data = local / str(conf.get("data", "data"))
    path = data / KERAS_MODEL_FILE
    pickled = sorted(p.name for p in data.glob("*pickle*"))
    if conf.get("model_type") != "keras" or not path.is_file() or pickled:
        found = "found" if path.is_file() else "missing"
        raise UntrustedModel(
            f"{uri} is not a native Keras model without pickled parts (model_type "
            f"{conf.get('model_type')!r}, {KERAS_MODEL_FILE} {found}, pickled files {pickled}): "
            "refused"
        )
    configure_tensorflow()
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def load_pair(settings: Settings, versions: tuple[str, str]) -> tuple[LoadedModel, LoadedModel]:
    """The forest and autoencoder at the given versions."""
    return (
        load_version(settings, settings.mlflow.iforest_model_name, versions[0], "iforest"),
        load_version(settings, settings.mlflow.lstm_model_name, versions[1], "lstm_ae"),
    )
