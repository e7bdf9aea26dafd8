"""`/v1/symbols/{symbol}/bars`: a symbol's recent minute bars from Redis, for the charts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.deps import API_PREFIX, ApiKey
from api.recent_bars import (
    CACHE_SCOPE,
    BarCursorError,
    BarQuery,
    decode_cursor,
    page_json,
    read_bars,
)
from api.responses import BarPage
from api.routes.anomalies import (
    LIMIT_DOC,
    SYMBOL_PATTERN,
    TIME_DOC,
    invalid,
    page_limit,
    time_range,
)

router = APIRouter(prefix=f"{API_PREFIX}/symbols", tags=["symbols"], dependencies=[ApiKey])


@router.get("/{symbol}/bars", response_model=BarPage, summary="Recent minute bars, newest first")
async def get_bars(
    request: Request,
    symbol: Annotated[str, Path(pattern=SYMBOL_PATTERN, description="e.g. AAPL")],
    start: Annotated[str | None, Query(alias="from", description=TIME_DOC)] = None,
    end: Annotated[str | None, Query(alias="to", description=TIME_DOC)] = None,
    limit: Annotated[int | None, Query(ge=1, description=LIMIT_DOC)] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="from `next_cursor`")] = None,
) -> Response:
    """A symbol's bars filtered by bar start, paged back; the newest `api.bars_kept` are kept.

    An unknown symbol, or one with no bar yet, gives an empty page (as `/v1/anomalies` does).
    """
    state = request.app.state
    settings, cache = state.settings, state.cache
    limit = page_limit(limit, settings.api.max_page_size)
    start_ms, end_ms = time_range(start, end)
    try:
        before_ms = decode_cursor(cursor) if cursor else None
    except BarCursorError as exc:
        raise invalid("cursor", str(exc)) from None
    query = BarQuery(symbol.upper(), start_ms, end_ms, limit, before_ms)
    scope = f"{CACHE_SCOPE}{query.symbol}"
    body, version = await cache.get(scope, query.cache_key())
    if body is None:
        records, next_before = await read_bars(state.redis, query)
        body = page_json(records, next_before)
        await cache.put(scope, query.cache_key(), version, body)
    return Response(body, media_type="application/json")
