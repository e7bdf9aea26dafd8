"""Trades -> minute bars: tumbling event-time windows, allowed lateness, late trades refused."""

from __future__ import annotations

import json
import random

import pytest

from producers.market_sim import simulate, trades_for
from stream_processors.bar_builder import (
    ACCEPTED,
    LATE,
    REPLAYED,
    MinuteBarBuilder,
    SymbolWindows,
)
from tickwatch.schemas import MINUTE_MS, Trade

LATENESS_S = 120


def test_bars_from_shuffled_trades_match_the_source_bars() -> None:
    bars = [b for b in simulate(["AAPL", "VOO"], 1, seed=2).bars if b.transactions >= 4][:60]
    trades = [t for b in bars for t in trades_for(b)]
    trades.sort(key=lambda t: t.timestamp_ms)
    rnd = random.Random(2)
    # disorder within the allowed lateness: swap neighbours less than 30 s apart
    for i in range(len(trades) - 1):
        if rnd.random() < 0.3 and trades[i + 1].timestamp_ms - trades[i].timestamp_ms < 30_000:
            trades[i], trades[i + 1] = trades[i + 1], trades[i]
    builder = MinuteBarBuilder(LATENESS_S)
    built = []
    for offset, trade in enumerate(trades):
        assert builder.add(trade, 0, offset) == ACCEPTED
        built += builder.close_ready()
    later = trades[-1].timestamp_ms + 10 * MINUTE_MS  # each symbol's watermark moves past all
    for i, symbol in enumerate(("AAPL", "VOO")):
        builder.add(Trade(symbol=symbol, price=1.0, size=1, timestamp_ms=later), 0, len(trades) + i)
    built += builder.close_ready()
    got = {(b.symbol, b.start_ms): b for b in built}
    for bar in bars:
        b = got[(bar.symbol, bar.start_ms)]
        assert (b.open, b.high, b.low, b.close) == pytest.approx(
            (bar.open, bar.high, bar.low, bar.close), abs=1e-4
        )
        assert b.volume == pytest.approx(bar.volume)
        assert b.transactions == len(trades_for(bar)) and b.source == "trades"
        assert b.low <= b.vwap <= b.high


def _trade(ts: int, price: float = 10.0) -> Trade:
    return Trade(symbol="AAPL", price=price, size=100, timestamp_ms=ts)


def test_late_trades_and_replays() -> None:
    t0 = 1_741_012_200_000
    builder = MinuteBarBuilder(LATENESS_S)
    assert builder.add(_trade(t0 + 1_000), 0, 0) == ACCEPTED
    assert builder.add(_trade(t0 + 60_000 + LATENESS_S * 1000 + 5), 0, 1) == ACCEPTED
    bars = builder.close_ready()
    assert [b.start_ms for b in bars] == [t0]
    assert builder.add(_trade(t0 + 30_000), 0, 2) == LATE  # its window has closed
    assert builder.add(_trade(t0 + 1_000), 0, 1) == REPLAYED  # offset already read
    state = json.loads(json.dumps(builder.symbols["AAPL"].to_dict()))
    assert SymbolWindows.from_dict(state) == builder.symbols["AAPL"]
