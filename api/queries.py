"""Newest-first anomaly reads from the Redis store, with filters and an opaque cursor."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from redis.asyncio import Redis

from api.anomaly_store import ALL, BY_SYMBOL, RECORD
from tickwatch.schemas import SEVERITY_RANK

SCAN_CHUNK = 200
SCAN_BUDGET = 20_000  # members examined per page at most; the cursor resumes after them


class CursorError(ValueError):
    """A cursor that was not issued by this API."""


@dataclass(frozen=True, order=True)
class Cursor:
    """Position after the last item examined: (bar start ms, event id), newest first."""

    bar_start_ms: int
    event_id: str

    def encode(self) -> str:
        """Opaque URL-safe token."""
        raw = f"{self.bar_start_ms}:{self.event_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a token from `encode`, raising CursorError otherwise."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            ms, _, event_id = raw.partition(":")
            cursor = cls(int(ms), event_id)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CursorError("not a cursor issued by this API") from None
        if len(event_id) != 32 or not all(c in "0123456789abcdef" for c in event_id):
            raise CursorError("not a cursor issued by this API")
        return cursor


@dataclass(frozen=True)
class AnomalyQuery:
    """Filters and page of `GET /v1/anomalies`; times are Unix ms, inclusive."""

    symbol: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    min_severity: str | None = None
    model: str | None = None
    limit: int = 100
    cursor: Cursor | None = None

    def cache_key(self) -> str:
        """A canonical string of every field, for the response cache."""
        c = self.cursor.encode() if self.cursor else ""
        return (
            f"{self.symbol or ''}|{self.start_ms}|{self.end_ms}|{self.min_severity or ''}|"
            f"{self.model or ''}|{self.limit}|{c}"
        )


def matches(record: dict, query: AnomalyQuery) -> bool:
    """True if a stored event passes the severity and model filters."""
    if query.min_severity and SEVERITY_RANK[record["severity"]] < SEVERITY_RANK[query.min_severity]:
        return False
    if query.model:
        return any(s["model"] == query.model and s["flagged"] for s in record["scores"])
    return True


async def list_anomalies(client: Redis, query: AnomalyQuery) -> tuple[list[bytes], Cursor | None]:
    """Up to `limit` stored events (raw JSON) newest first, and the cursor for the next page."""
    key = f"{BY_SYMBOL}{query.symbol}" if query.symbol else ALL
    after = query.cursor.bar_start_ms if query.cursor else None
    tops = [t for t in (query.end_ms, after) if t is not None]
    high = min(tops) if tops else "+inf"
    low = "-inf" if query.start_ms is None else query.start_ms
    found: list[tuple[bytes, Cursor]] = []
    offset = examined = 0
    last: Cursor | None = None
    while examined < SCAN_BUDGET:
        members = await client.zrange(
            key, high, low, desc=True, byscore=True, offset=offset, num=SCAN_CHUNK, withscores=True
        )
        if not members:
            return [r for r, _ in found], None
        offset += len(members)
        examined += len(members)
        positions = [Cursor(int(score), m.decode()) for m, score in members]
        if query.cursor:  # same bar as the cursor: only ids after it (ties order by id, desc)
            positions = [p for p in positions if p < query.cursor]
        if not positions:
            continue
        records = await client.mget([f"{RECORD}{p.event_id}" for p in positions])
        for pos, raw in zip(positions, records, strict=True):
            last = pos
            if raw is None or not matches(json.loads(raw), query):
                continue
            found.append((raw, pos))
            if len(found) == query.limit:
                return [r for r, _ in found], pos
    return [r for r, _ in found], last


def page_json(records: list[bytes], next_cursor: Cursor | None) -> bytes:
    """The `AnomalyPage` JSON body, assembled from stored records without re-encoding them."""
    token = json.dumps(next_cursor.encode() if next_cursor else None).encode()
    return b'{"items":[' + b",".join(records) + b'],"next_cursor":' + token + b"}"
