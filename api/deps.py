"""FastAPI dependencies as `Annotated` aliases: settings, the async Redis client, the API key."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from redis.asyncio import Redis

from api.auth import key_name
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
API_KEY_HEADER = "X-API-Key"
API_PREFIX = "/v1"  # every versioned router carries it, so route labels are full templates

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="One of the keys in `settings.api.api_key` and `settings.api.api_keys`.",
)


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


async def get_redis(request: Request) -> Redis:
    """The app's shared async Redis client."""
    return request.app.state.redis


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """401 unless `X-API-Key` is a configured key (constant time); 429 past that key's rate."""
    state = request.app.state
    name = key_name(state.api_keys, key)
    if name is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or invalid API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    # by name, never the key: shows which clients still use a key that is being rotated out
    log.debug("API key %r: %s %s", name, request.method, request.url.path)
    wait_s = state.rate_limiter.take(name)
    if wait_s:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of API key {name!r} reached "
            f"({state.rate_limiter.rate:g} requests/s); retry after {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ApiKey = Depends(require_api_key)
