"""The replay server's REST side: Polygon's minute-aggregates endpoint over the bars so far."""

from __future__ import annotations

import bisect
import datetime as dt
import json
import re
import uuid
from collections import defaultdict
from urllib.parse import parse_qs, urlencode, urlsplit

from producers.market_sim import NEW_YORK
from producers.replay_feed import rest_result
from tickwatch.schemas import MinuteBar

AGGS_PATH = re.compile(
    r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>\d+)/(?P<span>[a-z]+)/"
    r"(?P<start>[^/]+)/(?P<end>[^/]+)$"
)
DEFAULT_LIMIT, MAX_LIMIT = 5000, 50_000


def _bound(text: str, end: bool) -> int:
    """A from/to value in Unix ms: digits are ms, a date covers that whole New York day."""
    if text.isdigit():
        return int(text)
    day = dt.date.fromisoformat(text)
    if end:
        day += dt.timedelta(days=1)
    ms = int(dt.datetime.combine(day, dt.time(0, 0), NEW_YORK).timestamp() * 1000)
    return ms - 1 if end else ms


class AggregatesIndex:
    """Bars per symbol by start; only those starting at or before `visible_until` are served."""

    def __init__(self, bars: list[MinuteBar]) -> None:
        by_symbol: dict[str, list[MinuteBar]] = defaultdict(list)
        for b in bars:
            by_symbol[b.symbol].append(b)
        self.bars = {s: sorted(v, key=lambda b: b.start_ms) for s, v in by_symbol.items()}
        self.starts = {s: [b.start_ms for b in v] for s, v in self.bars.items()}
        self.visible_until = -1
        self.page_limit = MAX_LIMIT  # server-side cap on results per page (tests lower it)

    def handle(self, target: str, base_url: str) -> tuple[int, dict]:
        """Answer one GET `target` (path and query) like Polygon would."""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        m = AGGS_PATH.match(url.path)
        if not m:
            return 404, _error("NOT_FOUND", f"no such endpoint: {url.path}")
        if (m["mult"], m["span"]) != ("1", "minute"):
            return 400, _error("ERROR", "the replay server serves 1-minute aggregates only")
        try:
            start, end = _bound(m["start"], end=False), _bound(m["end"], end=True)
            limit = min(int(query.get("limit", DEFAULT_LIMIT)), self.page_limit)
        except ValueError as exc:
            return 400, _error("ERROR", f"bad parameter: {exc}")
        if limit <= 0:
            return 400, _error("ERROR", "limit must be positive")
        descending = query.get("sort", "asc") == "desc"
        ticker = m["ticker"]
        end = min(end, self.visible_until)
        starts = self.starts.get(ticker, [])
        lo, hi = bisect.bisect_left(starts, start), bisect.bisect_right(starts, end)
        rows = self.bars.get(ticker, [])[lo:hi]
        page = rows[::-1][:limit] if descending else rows[:limit]
        body: dict = {
            "ticker": ticker,
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": True,
            "status": "OK",
            "request_id": uuid.uuid4().hex,
            "results": [rest_result(b) for b in page],
        }
        if len(rows) > limit:
            last = page[-1].start_ms
            nxt_start, nxt_end = (start, last - 1) if descending else (last + 1, end)
            rest = {k: v for k, v in query.items() if k != "apiKey"}
            body["next_url"] = (
                f"{base_url}/v2/aggs/ticker/{ticker}/range/1/minute/"
                f"{nxt_start}/{nxt_end}?{urlencode(rest)}"
            )
        return 200, body


def _error(status: str, message: str) -> dict:
    return {"status": status, "request_id": uuid.uuid4().hex, "error": message}


def dumps(body: dict) -> str:
    """Compact JSON for a REST reply."""
    return json.dumps(body, separators=(",", ":"))
