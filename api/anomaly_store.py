"""The anomaly store in Redis: key layout and the idempotent, atomic batch write used by the sink.

One JSON record per `event_id`, a sorted set per symbol and one for all symbols (score: bar start
ms), the set of known symbols, a per-symbol cache version the API keys its cache on, and a pub/sub
channel for the live stream. The write is one Lua call per batch, so a batch lands whole or not at
all, and an event already stored (a replay) changes nothing: no write, no message, no invalidation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from tickwatch.schemas import DAY_MS, AnomalyEvent, encode

PREFIX = "tw:"
RECORD = PREFIX + "anomaly:"  # + event_id -> JSON
BY_SYMBOL = PREFIX + "anomalies:symbol:"  # + SYMBOL -> zset(event_id, bar_start_ms)
ALL = PREFIX + "anomalies:all"  # zset(event_id, bar_start_ms) across symbols
SYMBOLS = PREFIX + "anomalies:symbols"  # set of symbols with anomalies
CACHE_VERSION = PREFIX + "cache:version:"  # + SYMBOL or ALL_SYMBOLS -> int
ALL_SYMBOLS = "*"
LIVE_CHANNEL = PREFIX + "anomalies:live"  # pub/sub: one JSON AnomalyEvent per new event

# ARGV: retention_ms, then (event_id, symbol, bar_start_ms, json) per event.
# Retention is by bar time relative to the newest bar stored, so a replay of old data is kept
# and trimmed exactly as it was the first time (wall-clock retention would not be replay-safe).
_WRITE_LUA = """
local retention = tonumber(ARGV[1])
local newest = redis.call('ZREVRANGE', '{all}', 0, 0, 'WITHSCORES')[2]
newest = newest and tonumber(newest) or -1
for i = 2, #ARGV, 4 do
  local bar = tonumber(ARGV[i + 2])
  if bar > newest then newest = bar end
end
local cutoff = newest - retention
local added, trimmed = 0, 0
local expired = {}
local touched = {}
for i = 2, #ARGV, 4 do
  local id, sym, bar, json = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if bar < cutoff then
    expired[#expired + 1] = id
  elseif redis.call('SET', '{record}' .. id, json, 'NX') then
    redis.call('ZADD', '{by_symbol}' .. sym, ARGV[i + 2], id)
    redis.call('ZADD', '{all}', ARGV[i + 2], id)
    redis.call('SADD', '{symbols}', sym)
    redis.call('PUBLISH', '{channel}', json)
    touched[sym] = true
    added = added + 1
  end
end
if added > 0 then
  for sym, _ in pairs(touched) do redis.call('INCR', '{version}' .. sym) end
  redis.call('INCR', '{version}{all_symbols}')
end
local old = redis.call('ZRANGEBYSCORE', '{all}', '-inf', '(' .. cutoff)
for _, id in ipairs(old) do redis.call('DEL', '{record}' .. id) end
trimmed = #old
if trimmed > 0 then
  redis.call('ZREMRANGEBYSCORE', '{all}', '-inf', '(' .. cutoff)
  for _, sym in ipairs(redis.call('SMEMBERS', '{symbols}')) do
    redis.call('ZREMRANGEBYSCORE', '{by_symbol}' .. sym, '-inf', '(' .. cutoff)
    redis.call('INCR', '{version}' .. sym)
  end
  redis.call('INCR', '{version}{all_symbols}')
end
return {added, trimmed, expired}
"""
WRITE_LUA = (
    _WRITE_LUA.replace("{all}", ALL)
    .replace("{record}", RECORD)
    .replace("{by_symbol}", BY_SYMBOL)
    .replace("{symbols}", SYMBOLS)
    .replace("{channel}", LIVE_CHANNEL)
    .replace("{version}", CACHE_VERSION)
    .replace("{all_symbols}", ALL_SYMBOLS)
)


@dataclass(frozen=True)
class WriteResult:
    """One batch write: new events stored, old events trimmed, ids refused as past retention."""

    added: int
    trimmed: int
    expired: frozenset[str] = frozenset()


class AnomalyStore:
    """Writes anomaly events to Redis (sync client; used by the sink)."""

    def __init__(self, client: redis.Redis, retention_days: int) -> None:
        self.client = client
        self.retention_ms = retention_days * DAY_MS
        self._write = client.register_script(WRITE_LUA)

    def write_batch(self, events: Sequence[AnomalyEvent]) -> WriteResult:
        """Store a batch atomically and idempotently; publish and invalidate only for new events."""
        if not events:
            return WriteResult(0, 0)
        args: list[str | int | bytes] = [self.retention_ms]
        for e in events:
            args += [e.event_id, e.symbol, e.bar_start_ms, encode(e)]
        added, trimmed, expired = self._write(args=args)
        return WriteResult(int(added), int(trimmed), frozenset(i.decode() for i in expired))
