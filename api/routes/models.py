"""`/v1/models`: champion model versions and their validation metrics from MLflow."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from mlflow.exceptions import MlflowException

from api.deps import API_PREFIX, ApiKey, SettingsDep
from api.errors import DependencyUnavailable
from api.model_registry import champion_model_versions
from api.responses import DependencyDown, ModelsResponse
from tickwatch.settings import Settings

router = APIRouter(prefix=f"{API_PREFIX}/models", tags=["models"], dependencies=[ApiKey])

_cache: dict[str, tuple[float, ModelsResponse]] = {}


def _champions(settings: Settings) -> ModelsResponse:
    """Registry answer, cached in-process for the API cache TTL (MLflow calls take ~10-100 ms)."""
    key = settings.mlflow_tracking_uri
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < settings.api.cache_ttl_s:
        return hit[1]
    try:
        body = ModelsResponse(models=champion_model_versions(settings))
    except (MlflowException, OSError) as exc:
        raise DependencyUnavailable("mlflow", f"{type(exc).__name__}: {exc}"[:300]) from exc
    _cache[key] = (time.monotonic(), body)
    return body


@router.get(
    "",
    response_model=ModelsResponse,
    responses={503: {"model": DependencyDown}},
    summary="Champion model versions and their metrics",
)
async def get_models(settings: SettingsDep) -> ModelsResponse:
    """Each configured model's version holding the champion alias, with its run's metrics."""
    return await run_in_threadpool(_champions, settings)
