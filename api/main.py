"""The query API: `create_app(settings)` builds the FastAPI app; `run(settings)` serves it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import ApiKeyError, RateLimiter, usable_keys
from api.cache import ResponseCache
from api.errors import install_error_handlers
from api.online_features import OnlineFeatures
from api.routes import anomalies, bars, health, models, pages, pipeline, score, symbols
from api.scoring import ChampionScorer
from tickwatch.metrics import API_LATENCY, API_REQUESTS
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
STARTUP_WAIT_S = 30.0
DESCRIPTION = """Anomalies found by tickwatch, the features and models behind them.

Every `/v1` endpoint needs the `X-API-Key` header. Errors: 401 (key missing or wrong),
429 (the key's rate limit; `Retry-After` says when to retry),
422 (a parameter is invalid; `message` names it), 503 (a dependency is down; `dependency` names it).
The live dashboard is at `/dashboard`.
"""


class RequestMetrics:
    """ASGI middleware: request count by status and latency, labelled by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            API_REQUESTS.labels(route, method, str(status)).inc()
            API_LATENCY.labels(route, method).observe(time.perf_counter() - start)


def make_redis(settings: Settings) -> Redis:
    """Async client that fails fast when Redis is down and reconnects on its own when it returns."""
    return Redis(
        host=settings.redis.host,
        port=settings.redis.port,
        db=settings.redis.db,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
        max_connections=200,
    )


def create_app(settings: Settings) -> FastAPI:
    """The API app for these settings (its Redis client connects lazily).

    Raises ApiKeyError when the configured keys may not serve (see api.auth.usable_keys)."""
    api_keys = usable_keys(settings)
    log.info("API keys: %s", ", ".join(sorted(api_keys)))  # names only, never a key

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Open Feast before serving (its first load takes seconds, and CPython 3.11 can fail
        # compiling code in two threads at once); past STARTUP_WAIT_S it finishes in the background.
        warmup = asyncio.create_task(asyncio.to_thread(app.state.online_features.warm_up))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(warmup), STARTUP_WAIT_S)
        yield
        warmup.cancel()
        await app.state.redis.aclose()

    app = FastAPI(
        title="tickwatch API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by api/routes/pages.py from vendored assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.api_keys = api_keys
    app.state.rate_limiter = RateLimiter(
        settings.api.rate_limit_per_s, settings.api.rate_limit_burst
    )
    app.state.redis = make_redis(settings)
    app.state.cache = ResponseCache(app.state.redis, settings.api.cache_ttl_s)
    app.state.online_features = OnlineFeatures(settings)
    app.state.scorer = ChampionScorer(settings)
    install_error_handlers(app)
    app.add_middleware(RequestMetrics)
    app.include_router(health.router)
    for module in (anomalies, symbols, bars, models, score, pipeline):
        app.include_router(module.router)
    app.include_router(pages.router)
    app.mount(pages.STATIC_URL, StaticFiles(directory=pages.STATIC_DIR), name="static")
    return app


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve the API with uvicorn (access log on; it never includes headers)."""
    import uvicorn

    # A down MLflow server must not hold requests for minutes of client retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    try:
        app = create_app(settings)
    except ApiKeyError as exc:
        raise SystemExit(f"error: tickwatch api refuses to start: {exc}") from None
    uvicorn.run(
        app,
        host=host or settings.api.host,
        port=port or settings.api.port,
        # the level TICKWATCH_LOG_LEVEL gave the root logger (access log included at INFO)
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
    )
