"""FastAPI dependencies as `Annotated` aliases: settings, the async Redis client, the API key."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from redis.asyncio import Redis

from tickwatch.settings import Settings

API_KEY_HEADER = "X-API-Key"
API_PREFIX = "/v1"  # every versioned router carries it, so route labels are full templates

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="The key in `settings.api.api_key`."
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
    """401 unless the `X-API-Key` header equals the configured key (constant-time compare)."""
    expected = request.app.state.settings.api.api_key.get_secret_value().encode()
    if key is None or not hmac.compare_digest(key.encode(), expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or invalid API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "ApiKey"},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ApiKey = Depends(require_api_key)
