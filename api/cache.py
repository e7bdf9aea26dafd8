"""Response cache for hot queries in Redis: short TTL, keyed on a per-symbol version the sink bumps.

A cached page lives under `tw:cache:page:<scope>:<version>:<digest>`. The sink increments the
version of a symbol (and of the all-symbols scope) in the same atomic write that stores a new
anomaly, so a stale page is never read again: invalidation without scanning or deleting keys.
Reading the version and the page is one Lua call, one round trip.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from api.anomaly_store import ALL_SYMBOLS, CACHE_VERSION, PREFIX

PAGE = PREFIX + "cache:page:"

_GET_LUA = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ':' .. ARGV[2])}
"""


class ResponseCache:
    """Get/put serialized responses for one scope (a symbol or all symbols)."""

    def __init__(self, client: Redis, ttl_s: float) -> None:
        self.client = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._get = client.register_script(_GET_LUA)

    @staticmethod
    def _parts(scope: str | None, query_key: str) -> tuple[str, str, str]:
        scope = scope or ALL_SYMBOLS
        digest = hashlib.blake2b(query_key.encode(), digest_size=16).hexdigest()
        return f"{CACHE_VERSION}{scope}", f"{PAGE}{scope}:", digest

    async def get(self, scope: str | None, query_key: str) -> tuple[bytes | None, str]:
        """The cached body (or None) and the version it was looked up under."""
        version_key, prefix, digest = self._parts(scope, query_key)
        version, body = await self._get(keys=[version_key], args=[prefix, digest])
        return body, version.decode() if isinstance(version, bytes) else str(version)

    async def put(self, scope: str | None, query_key: str, version: str, body: bytes) -> None:
        """Store a body under the version read before computing it (a newer write wins)."""
        _, prefix, digest = self._parts(scope, query_key)
        await self.client.set(f"{prefix}{version}:{digest}", body, px=self.ttl_ms)
