"""`/v1/pipeline/health`: throughput, lag and latency of the pipeline, as Prometheus sees them."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import API_PREFIX, ApiKey, SettingsDep
from api.pipeline_health import read_health
from api.responses import DependencyDown, PipelineHealth

router = APIRouter(prefix=f"{API_PREFIX}/pipeline", tags=["pipeline"], dependencies=[ApiKey])


@router.get(
    "/health",
    response_model=PipelineHealth,
    responses={503: {"model": DependencyDown, "description": "Prometheus cannot answer"}},
    summary="Bars/s, anomalies/min, dead letters/min, consumer lag and latency per stage",
)
async def get_pipeline_health(settings: SettingsDep) -> PipelineHealth:
    """The numbers behind Grafana's pipeline-health dashboard, over the last minute."""
    return await read_health(settings)
