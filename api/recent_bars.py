"""Recent minute bars per symbol in Redis: key layout, the bar sink's write, the API's paged read.

The charts need recent OHLCV bars; Feast's online store keeps only the latest feature row and the
bars topic cannot answer "the last N bars of AAPL" without scanning a partition per request. So
the sink keeps a bounded copy: one sorted set per symbol (score: bar start ms, member: the bar's
JSON), trimmed to the newest `settings.api.bars_kept`. A write replaces a minute already stored
(a corrected bar), so replaying the topic changes nothing. It bumps the symbol's bars cache version
in the same Lua call, as the anomaly store does for anomaly pages.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.asyncio import Redis as AsyncRedis

from api.anomaly_store import CACHE_VERSION, PREFIX
from tickwatch.schemas import MinuteBar, encode

BARS = PREFIX + "bars:"  # + SYMBOL -> zset(bar JSON, start_ms)
CACHE_SCOPE = "bars:"  # + SYMBOL: the response-cache scope of a symbol's bar pages

# ARGV: keep, then (symbol, start_ms, json) per bar; returns how many minutes were new.
_WRITE_LUA = """
local keep = tonumber(ARGV[1])
local new = 0
local touched = {}
for i = 2, #ARGV, 3 do
  local key = '{bars}' .. ARGV[i]
  if redis.call('ZREMRANGEBYSCORE', key, ARGV[i + 1], ARGV[i + 1]) == 0 then new = new + 1 end
  redis.call('ZADD', key, ARGV[i + 1], ARGV[i + 2])
  touched[ARGV[i]] = true
end
for sym, _ in pairs(touched) do
  redis.call('ZREMRANGEBYRANK', '{bars}' .. sym, 0, -(keep + 1))
  redis.call('INCR', '{version}' .. sym)
end
return new
"""
WRITE_LUA = _WRITE_LUA.replace("{bars}", BARS).replace("{version}", CACHE_VERSION + CACHE_SCOPE)


class BarCursorError(ValueError):
    """A bars cursor that was not issued by this API."""


@dataclass(frozen=True)
class BarQuery:
    """One page of `GET /v1/symbols/{symbol}/bars`: bar starts in [start_ms, end_ms], newest first.

    `before_ms` (from the cursor) is exclusive: the next page starts below the last bar returned.
    """

    symbol: str
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int = 100
    before_ms: int | None = None

    def cache_key(self) -> str:
        """A canonical string of every field, for the response cache."""
        return f"{self.symbol}|{self.start_ms}|{self.end_ms}|{self.limit}|{self.before_ms}"


def encode_cursor(before_ms: int) -> str:
    """Opaque URL-safe token for the page below `before_ms`."""
    return base64.urlsafe_b64encode(f"bars:{before_ms}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    """The bar start a token from `encode_cursor` stands for, raising BarCursorError otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, ms = raw.partition(":")
        if kind != "bars" or not ms.isdigit():
            raise ValueError(raw)
        return int(ms)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BarCursorError("not a cursor issued by this API") from None


class RecentBars:
    """Writes bars to the per-symbol sorted sets (sync client; used by the bar sink)."""

    def __init__(self, client: redis.Redis, keep: int) -> None:
        self.keep = keep
        self._write = client.register_script(WRITE_LUA)

    def write_batch(self, bars: Sequence[MinuteBar]) -> int:
        """Store a batch atomically, replacing minutes already stored; returns the new minutes."""
        if not bars:
            return 0
        args: list[str | int | bytes] = [self.keep]
        for b in bars:
            args += [b.symbol, b.start_ms, encode(b)]
        return int(self._write(args=args))


async def read_bars(client: AsyncRedis, query: BarQuery) -> tuple[list[bytes], int | None]:
    """Up to `limit` bars (raw JSON) newest first, and the exclusive bound of the next page."""
    high: str | int = "+inf" if query.end_ms is None else query.end_ms
    if query.before_ms is not None and (query.end_ms is None or query.before_ms <= query.end_ms):
        high = f"({query.before_ms}"
    low: str | int = "-inf" if query.start_ms is None else query.start_ms
    members = await client.zrange(
        f"{BARS}{query.symbol}",
        high,
        low,
        desc=True,
        byscore=True,
        offset=0,
        num=query.limit + 1,
        withscores=True,
    )
    page = members[: query.limit]
    more = len(members) > query.limit
    return [m for m, _ in page], int(page[-1][1]) if more else None


def page_json(records: list[bytes], before_ms: int | None) -> bytes:
    """The `BarPage` JSON body, assembled from stored bars without re-encoding them."""
    token = f'"{encode_cursor(before_ms)}"' if before_ms is not None else "null"
    return b'{"items":[' + b",".join(records) + b'],"next_cursor":' + token.encode() + b"}"
