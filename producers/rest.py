"""Polygon REST minute aggregates: paging through `next_url`, backing off on HTTP 429.

httpx rather than the official `massive` client: `massive` retries 429 only briefly (0.1 s
backoff factor, 3 tries) and returns an empty list on a body it cannot decode, where the free
tier needs minute-long waits and a bad body must be an error.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import ValidationError

from tickwatch.bar_files import typical_price
from tickwatch.retry import backoff_s
from tickwatch.schemas import MINUTE_MS, MinuteBar, describe_error

log = logging.getLogger(__name__)
PAGE_LIMIT = 50_000
RETRY_FIRST_S = 1.0  # jittered backoff (tickwatch.retry.backoff_s) when no Retry-After is given
RETRY_MAX_S = 60.0  # the free tier needs minute-long waits


class RestError(RuntimeError):
    """The REST API refused the request (bad key, bad range) or kept failing."""


def fetch_minute_bars(
    client: httpx.Client,
    base_url: str,
    api_key: str,
    symbol: str,
    start: str | int,
    end: str | int,
    *,
    max_retries: int = 8,
    sleep: Callable[[float], None] = time.sleep,
    on_page: Callable[[int], None] | None = None,
) -> tuple[list[MinuteBar], list[tuple[str, str]]]:
    """Minute bars of `symbol` from `start` to `end` (dates or Unix ms, inclusive).

    Returns the valid bars (source="rest", ascending) and the refused results as (raw, reason).
    """
    url: str | None = f"{base_url}/v2/aggs/ticker/{symbol}/range/1/minute/{start}/{end}"
    params: dict[str, Any] = {"adjusted": "true", "sort": "asc", "limit": PAGE_LIMIT}
    headers = {"Authorization": f"Bearer {api_key}"}  # not in the URL, which gets logged
    bars: list[MinuteBar] = []
    refused: list[tuple[str, str]] = []
    while url:
        body = _get_json(client, url, params, headers, max_retries, sleep)
        results = body.get("results") or []
        for row in results:
            try:
                bars.append(_row_to_bar(symbol, row))
            except ValidationError as exc:
                refused.append((repr(row), describe_error(MinuteBar, exc)))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                refused.append((repr(row), f"{type(exc).__name__}: {exc}"))
        if on_page:
            on_page(len(results))
        url = body.get("next_url")
        params = {}  # next_url carries the query parameters
    return bars, refused


def _get_json(
    client: httpx.Client,
    url: str,
    params: dict[str, Any],
    headers: dict[str, str],
    max_retries: int,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    for attempt in range(max_retries + 1):
        try:
            resp = client.get(url, params=params, headers=headers)
        except httpx.TransportError as exc:
            if attempt == max_retries:
                raise RestError(f"GET {url} failed: {exc}") from exc
            sleep(backoff_s(attempt, RETRY_FIRST_S, RETRY_MAX_S))
            continue
        if resp.status_code == 429 or resp.status_code >= 500:
            if attempt == max_retries:
                raise RestError(f"GET {url}: HTTP {resp.status_code} after {attempt} retries")
            wait = _retry_after(resp) or backoff_s(attempt, RETRY_FIRST_S, RETRY_MAX_S)
            log.warning("HTTP %d from %s; retrying in %.1fs", resp.status_code, url, wait)
            sleep(wait)
            continue
        if resp.status_code != 200:
            raise RestError(f"GET {url}: HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise RestError(f"GET {url}: response is not JSON: {resp.text[:200]!r}") from exc
        if not isinstance(body, dict) or body.get("status") not in ("OK", "DELAYED"):
            raise RestError(f"GET {url}: unexpected response {str(body)[:300]}")
        return body
    raise AssertionError("unreachable")


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        value = float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _row_to_bar(symbol: str, row: dict[str, Any]) -> MinuteBar:
    """REST aggregates carry the bar start as `t`; `vw` may be absent (typical price then)."""
    start = row["t"]
    vwap = row["vw"] if "vw" in row else typical_price(row["h"], row["l"], row["c"])
    return MinuteBar.model_validate(
        {
            "symbol": symbol,
            "start_ms": start,
            "end_ms": start + MINUTE_MS,
            "open": row["o"],
            "high": row["h"],
            "low": row["l"],
            "close": row["c"],
            "volume": row["v"],
            "vwap": vwap,
            "transactions": row.get("n", 0),
            "source": "rest",
        }
    )
