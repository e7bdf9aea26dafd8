"""`/v1/anomalies`: filtered, cursor-paginated list; one event; the live stream (SSE)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from api.anomaly_store import LIVE_CHANNEL, RECORD
from api.deps import API_PREFIX, ApiKey, RedisDep
from api.queries import AnomalyQuery, Cursor, CursorError, list_anomalies, page_json
from api.responses import AnomalyPage, Problem
from tickwatch.schemas import AnomalyEvent, Severity

log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0
router = APIRouter(prefix=f"{API_PREFIX}/anomalies", tags=["anomalies"], dependencies=[ApiKey])

SYMBOL_PATTERN = r"^[A-Za-z][A-Za-z0-9.\-]{0,15}$"
SymbolQuery = Annotated[str | None, Query(pattern=SYMBOL_PATTERN, description="e.g. AAPL")]
MODEL_DOC = "only events this model flagged (model name as in the event's scores)"
DEFAULT_LIMIT = 100
LIMIT_DOC = "page size (default 100), at most settings.api.max_page_size"
TIME_DOC = "Unix milliseconds or ISO-8601 (UTC if no offset), inclusive; filters on bar start"


def invalid(param: str, message: str) -> RequestValidationError:
    """A 422 naming one query parameter."""
    error = {"loc": ("query", param), "msg": message, "type": "value_error"}
    return RequestValidationError([error])


def page_limit(limit: int | None, max_page_size: int) -> int:
    """The requested page size, or the default; over the configured maximum is a 422."""
    if limit is None:
        return min(DEFAULT_LIMIT, max_page_size)
    if limit > max_page_size:
        raise invalid("limit", f"must be at most {max_page_size}")
    return limit


def time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """`from` and `to` in Unix ms; `from` after `to` is a 422."""
    start_ms, end_ms = parse_time("from", start), parse_time("to", end)
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise invalid("from", "must not be after `to`")
    return start_ms, end_ms


def parse_time(param: str, value: str | None) -> int | None:
    """Unix ms (digits) or an ISO-8601 time, to Unix ms."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        ms = int(text)
    else:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise invalid(param, "expected Unix milliseconds or an ISO-8601 time") from None
        ms = int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)
    if not 0 <= ms <= 4_102_444_800_000:
        raise invalid(param, "time out of range (1970..2100)")
    return ms


@router.get("", response_model=AnomalyPage, summary="List anomalies, newest first")
async def get_anomalies(
    request: Request,
    symbol: SymbolQuery = None,
    start: Annotated[str | None, Query(alias="from", description=TIME_DOC)] = None,
    end: Annotated[str | None, Query(alias="to", description=TIME_DOC)] = None,
    min_severity: Annotated[Severity | None, Query(description="lowest severity kept")] = None,
    model: Annotated[str | None, Query(min_length=1, max_length=100, description=MODEL_DOC)] = None,
    limit: Annotated[int | None, Query(ge=1, description=LIMIT_DOC)] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="from `next_cursor`")] = None,
) -> Response:
    """Anomalies filtered by symbol, bar time, minimum severity and model; cursor-paginated."""
    state = request.app.state  # the hot path: app state directly, not three more dependencies
    settings, redis, cache = state.settings, state.redis, state.cache
    limit = page_limit(limit, settings.api.max_page_size)
    start_ms, end_ms = time_range(start, end)
    try:
        position = Cursor.decode(cursor) if cursor else None
    except CursorError as exc:
        raise invalid("cursor", str(exc)) from None
    query = AnomalyQuery(
        symbol.upper() if symbol else None, start_ms, end_ms, min_severity, model, limit, position
    )
    body, version = await cache.get(query.symbol, query.cache_key())
    if body is None:
        records, next_cursor = await list_anomalies(redis, query)
        body = page_json(records, next_cursor)
        await cache.put(query.symbol, query.cache_key(), version, body)
    return Response(body, media_type="application/json")


@router.get(
    "/stream",
    response_class=StreamingResponse,
    summary="Live stream of new anomalies (server-sent events)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`event: anomaly`, `id: <event_id>`, `data: <AnomalyEvent>`",
        }
    },
)
async def stream_anomalies(
    redis: RedisDep,
    symbol: SymbolQuery = None,
) -> StreamingResponse:
    """Each new anomaly as an SSE `anomaly` event whose data is the AnomalyEvent JSON."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(LIVE_CHANNEL)  # before the response starts: Redis down -> 503
    return StreamingResponse(
        sse_events(pubsub, symbol.upper() if symbol else None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def sse_events(pubsub: PubSub, symbol: str | None) -> AsyncIterator[bytes]:
    """SSE frames from the live channel, a keep-alive comment when idle; ends if Redis goes away."""
    try:
        yield b": subscribed\n\n"
        idle = 0.0
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is None:
                idle += 1.0
                if idle >= KEEPALIVE_S:
                    idle = 0.0
                    yield b": keep-alive\n\n"
                continue
            event = AnomalyEvent.model_validate_json(msg["data"])
            if symbol is None or event.symbol == symbol:
                yield (
                    b"event: anomaly\nid: "
                    + event.event_id.encode()
                    + b"\ndata: "
                    + msg["data"]
                    + b"\n\n"
                )
    except RedisError as exc:
        log.warning("live stream ended: Redis unavailable (%s)", type(exc).__name__)
        yield b'event: error\ndata: {"detail": "Redis unavailable; reconnect"}\n\n'
    finally:
        with contextlib.suppress(RedisError):
            await pubsub.aclose()


@router.get(
    "/{event_id}",
    response_model=AnomalyEvent,
    responses={404: {"model": Problem}},
    summary="One anomaly with its full explanation",
)
async def get_anomaly(
    redis: RedisDep,
    event_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex digits")],
) -> Response:
    """The stored event: model scores, contributing features (reasons) and rules that fired."""
    raw = await redis.get(f"{RECORD}{event_id}")
    if raw is None:
        raise HTTPException(404, f"no anomaly with id {event_id!r}")
    return Response(raw, media_type="application/json")
