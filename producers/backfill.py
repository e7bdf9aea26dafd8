"""`tickwatch backfill`: REST minute bars for symbols and dates -> bars topic + Parquet store.

Bars already in the Parquet store are skipped, so re-running a range publishes and writes nothing
twice. Bars are written to Parquet only after Kafka acknowledged them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import httpx
from tqdm import tqdm

from producers.market_sim import trading_day_of
from producers.publisher import Publisher
from producers.rest import fetch_minute_bars
from producers.upstream import upstream_for
from tickwatch import bar_store
from tickwatch.schemas import MinuteBar
from tickwatch.settings import Settings
from tickwatch.topic_check import require_topics
from tickwatch.topics import BARS, DEAD_LETTER

log = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    """What one backfill run did."""

    fetched: int = 0
    published: int = 0
    already_stored: int = 0
    refused: int = 0


def run(
    settings: Settings, symbols: list[str], start: dt.date, end: dt.date, progress: bool = True
) -> BackfillReport:
    """Backfill `symbols` from `start` to `end` (inclusive)."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    upstream = upstream_for(settings)
    require_topics(settings, (BARS, DEAD_LETTER), "backfill")
    publisher = Publisher(settings, stage="backfill")
    root = bar_store.bars_root(settings)
    report = BackfillReport()
    bar = tqdm(total=None, unit="bars", disable=not progress, desc="backfill")
    with httpx.Client(timeout=60) as client:
        for symbol in symbols:
            bar.set_postfix_str(symbol)
            bars, refused = fetch_minute_bars(
                client,
                upstream.rest_url,
                upstream.api_key,
                symbol,
                start.isoformat(),
                end.isoformat(),
                on_page=bar.update,
            )
            for raw, reason in refused:
                publisher.dead_letters.send(raw, reason, kind="invalid_rest_bar", key=symbol)
            new = _not_stored(root, bars)
            report.fetched += len(bars)
            report.refused += len(refused)
            report.already_stored += len(bars) - len(new)
            report.published += publisher.publish_bars(new)
            publisher.flush()
            bar_store.write_bars(root, new)
    bar.close()
    log.info("backfill %s..%s: %s", start, end, report)
    return report


def _not_stored(root, bars: list[MinuteBar]) -> list[MinuteBar]:
    """The bars whose (symbol, start) is not yet in the Parquet store."""
    cache: dict[tuple[str, dt.date], set[int]] = {}
    out = []
    for b in bars:
        key = (b.symbol, trading_day_of(b.start_ms))
        if key not in cache:
            cache[key] = bar_store.stored_timestamps(root, *key)
        if b.start_ms not in cache[key]:
            out.append(b)
    return out
