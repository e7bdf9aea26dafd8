"""`/healthz` (process up), `/readyz` (Kafka, Redis, Feast, models reachable), `/metrics`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import RedisDep, SettingsDep
from api.model_registry import champion_model_versions
from api.online_features import online_store
from api.responses import Check, Readiness
from tickwatch.kafka import admin
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, topic_name

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 5.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


def _kafka(request: Request, settings: Settings) -> str:
    if getattr(request.app.state, "kafka_admin", None) is None:  # one client, not one per probe
        request.app.state.kafka_admin = admin(settings)
    topics = request.app.state.kafka_admin.list_topics(timeout=3).topics
    name = topic_name(ANOMALIES, settings)
    if name not in topics:
        raise RuntimeError(f"topic {name} missing")
    return f"{settings.kafka.bootstrap_servers}: topic {name} present"


def _models(settings: Settings) -> str:
    """The registry answers; a missing champion is reported, not fatal (only scoring needs it)."""
    versions = champion_model_versions(settings)
    loaded = [f"{m.name} v{m.version}" for m in versions if m.version]
    if not loaded:
        return (
            f"registry reachable; no model holds the alias {settings.mlflow.champion_alias!r}"
            " yet (POST /v1/score answers 503 until one does)"
        )
    return ", ".join(loaded)


async def _check(probe: Callable[[], Awaitable[str]]) -> Check:
    try:
        return Check(ok=True, detail=await asyncio.wait_for(probe(), CHECK_TIMEOUT_S))
    except TimeoutError:
        return Check(ok=False, detail=f"no answer in {CHECK_TIMEOUT_S:g}s")
    except Exception as exc:  # a readiness probe reports any failure, it never raises
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is unreachable"}},
    summary="Kafka, Redis, Feast and the models are reachable",
)
async def readyz(request: Request, settings: SettingsDep, redis: RedisDep) -> JSONResponse:
    """200 when every dependency answers, else 503; the body lists each check."""

    async def redis_probe() -> str:
        await redis.ping()  # type: ignore[misc]  # redis-py types ping() as bool | Awaitable
        return f"{settings.redis.host}:{settings.redis.port}/{settings.redis.db}"

    async def feast_probe() -> str:
        return await run_in_threadpool(lambda: online_store(request.app).describe())

    probes = {
        "kafka": lambda: run_in_threadpool(_kafka, request, settings),
        "redis": redis_probe,
        "feast": feast_probe,
        "models": lambda: run_in_threadpool(_models, settings),
    }
    results = await asyncio.gather(*(_check(p) for p in probes.values()))
    checks = dict(zip(probes, results, strict=True))
    body = Readiness(ready=all(c.ok for c in results), checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
