"""Registry artifacts load without pickle: anything but skops or native Keras is refused.

Each refused version is registered the way an attacker with write access to the registry could
(MLflow's own loaders would run its pickle, or trust the types the artifact itself declares).
"""

from __future__ import annotations

import os

import mlflow
import mlflow.sklearn
import mlflow.tensorflow
import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, RobustScaler

from detection import registry
from detection.registry import UntrustedModel
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)


def _register_forest(settings: Settings, model: object, fmt: str, **kwargs: object) -> str:
    registry.use_tracking(settings)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="iforest",
            serialization_format=fmt,
            registered_model_name=settings.mlflow.iforest_model_name,
            **kwargs,
        )
    return str(info.registered_model_version)


def test_a_pickled_forest_is_refused(settings: Settings) -> None:
    version = _register_forest(settings, RobustScaler().fit(X), "cloudpickle")
    with pytest.raises(UntrustedModel, match="stored as 'cloudpickle', not skops"):
        registry.load_version(settings, settings.mlflow.iforest_model_name, version, "iforest")


def test_a_skops_forest_with_types_it_declares_trusted_is_refused(settings: Settings) -> None:
    # os.getcwd stands for any callable a crafted artifact could name; the artifact lists it as
    # trusted, which is what MLflow's own skops loader would go by
    pipe = Pipeline([("f", FunctionTransformer(func=os.getcwd))])
    version = _register_forest(settings, pipe, "skops", skops_trusted_types=["posix.getcwd"])
    with pytest.raises(UntrustedModel, match="holds types tickwatch does not trust: .*getcwd"):
        registry.load_version(settings, settings.mlflow.iforest_model_name, version, "iforest")


def test_a_keras_model_with_pickled_custom_objects_is_refused(settings: Settings) -> None:
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    registry.use_tracking(settings)
    with mlflow.start_run():
        info = mlflow.tensorflow.log_model(
            model,
            name="lstm_ae",
            custom_objects={"scale": np.float32(2.0)},  # saved with cloudpickle beside the model
            registered_model_name=settings.mlflow.lstm_model_name,
        )
    with pytest.raises(UntrustedModel, match="pickled files \\['custom_objects.cloudpickle'\\]"):
        registry.load_version(
            settings, settings.mlflow.lstm_model_name, str(info.registered_model_version), "lstm_ae"
        )
