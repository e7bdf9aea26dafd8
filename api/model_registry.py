"""Champion model versions and their validation metrics, read from the MLflow registry."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from api.responses import ModelVersionInfo
from detection.registry import UNSET_CODES
from tickwatch.settings import Settings


def model_names(settings: Settings) -> list[str]:
    """The registered model names the scoring worker loads."""
    return [settings.mlflow.iforest_model_name, settings.mlflow.lstm_model_name]


def _missing(exc: MlflowException) -> bool:
    """The registry's answer for a model or alias that does not exist (not an outage)."""
    return exc.error_code in UNSET_CODES


def champion_model_versions(settings: Settings) -> list[ModelVersionInfo]:
    """Each configured model's champion version (None if no version holds the alias) and metrics."""
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    alias = settings.mlflow.champion_alias
    out = []
    for name in model_names(settings):
        try:
            version = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if not _missing(exc):
                raise
            out.append(ModelVersionInfo(name=name, alias=alias, version=None))
            continue
        metrics: dict[str, float] = {}
        if version.run_id:
            metrics = dict(client.get_run(version.run_id).data.metrics)
        out.append(
            ModelVersionInfo(
                name=name,
                alias=alias,
                version=str(version.version),
                run_id=version.run_id,
                created_at_ms=version.creation_timestamp,
                metrics=metrics,
                tags=dict(version.tags),
            )
        )
    return out
