"""Error bodies: 422 naming the bad parameter, 503 naming the unavailable dependency."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)


class DependencyUnavailable(RuntimeError):
    """A backing service (Redis, Feast, MLflow, the scorer) cannot answer; the API replies 503."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail


def unavailable(dependency: str, detail: str) -> JSONResponse:
    """A 503 with a body saying what is down; clients may retry after a second."""
    return JSONResponse(
        {"detail": detail, "dependency": dependency}, status_code=503, headers={"Retry-After": "1"}
    )


def describe_validation(exc: RequestValidationError) -> tuple[list[dict], str]:
    """FastAPI's error list without echoed input, and one line naming each bad parameter."""
    errors, parts = [], []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "request"
        name = ".".join(loc[1:]) or where
        parts.append(f"{where} parameter '{name}': {err.get('msg', 'invalid')}")
        errors.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
    return errors, "; ".join(parts)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors, message = describe_validation(exc)
    return JSONResponse({"detail": errors, "message": message}, status_code=422)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable: %s", type(exc).__name__)
    return unavailable("redis", "Redis is unavailable; the API recovers by itself when it returns")


async def _dependency(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DependencyUnavailable)
    log.warning("%s unavailable: %s", exc.dependency, exc.detail[:300])
    return unavailable(exc.dependency, exc.detail)


def install_error_handlers(app: FastAPI) -> None:
    """Register the 422 and 503 handlers."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
    app.add_exception_handler(DependencyUnavailable, _dependency)
