"""The synthetic whole market (`replay.market_symbols`): ticker-like names, valid bars minute
after minute, the same for the same seed; the replay server streams a minute's bars together."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time

import pytest
from websockets.asyncio.client import connect

from producers.market_sim import MARKET_SYMBOL, WholeMarket, session_open_ms, ticker_names
from producers.polygon_ws import handshake
from producers.replay_feed import ReplayData
from producers.replay_server import ReplayServer
from producers.upstream import REPLAY_COMPLETE
from tickwatch.schemas import MINUTE_MS, MinuteBar
from tickwatch.settings import Settings

DAY = dt.date(2025, 3, 3)


def test_ticker_names_are_distinct_ticker_like_and_fixed_by_the_seed() -> None:
    names = ticker_names(2000, 7)
    assert names[0] == MARKET_SYMBOL and "AAPL" in names[:5]
    assert len(set(names)) == 2000
    assert all(re.fullmatch(r"[A-Z]{1,5}", n) for n in names)
    lengths = [len(n) for n in names[5:]]
    assert lengths.count(4) > lengths.count(3) > lengths.count(5)  # the listings' mix
    assert ticker_names(2000, 7) == names and ticker_names(2000, 8) != names
    assert ticker_names(3, 7) == names[:3]


def test_whole_market_minutes_are_valid_bars_each_opening_at_the_last_close() -> None:
    market = WholeMarket(500, 7, DAY)
    first, second = market.next_minute(), market.next_minute()
    assert [b.symbol for b in first] == market.symbols == [b.symbol for b in second]
    assert {b.start_ms for b in first} == {session_open_ms(DAY)}
    assert {b.start_ms for b in second} == {session_open_ms(DAY) + MINUTE_MS}
    for a, b in zip(first, second, strict=True):
        MinuteBar.model_validate(b.model_dump())  # OHLC consistent, positive, on the minute
        assert b.open == a.close and b.volume > 0 and b.transactions >= 1
    moves = [abs(b.close / b.open - 1) for b in second]
    assert 0 < sorted(moves)[len(moves) // 2] < 0.01  # minute moves of a normal market
    again = WholeMarket(500, 7, DAY)
    assert again.next_minute() == first


def test_whole_market_ends_after_its_sessions() -> None:
    market = WholeMarket(5, 7, DAY, days=1)
    bars = [market.next_minute() for _ in range(market.minutes)]
    assert market.minutes == 390 and bars[-1][0].start_ms == session_open_ms(DAY) + 389 * 60_000
    with pytest.raises(IndexError):
        market.next_minute()


def test_the_replay_server_streams_each_minute_together_at_its_spacing() -> None:
    spacing_s = 0.5  # speed 120: a minute every 60 / 120 s

    async def run() -> tuple[float, list[tuple[float, list[dict]]]]:
        s = Settings(_env_file=None)
        replay = s.replay.model_copy(
            update={"host": "127.0.0.1", "port": 0, "speed": 60 / spacing_s}
        )
        market = WholeMarket(2500, 7, DAY)
        market.minutes = 3
        server = ReplayServer(
            s.model_copy(update={"replay": replay}), ReplayData([], []), market=market
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(server.serve(stop, ready))
        await asyncio.wait_for(ready.wait(), 10)
        got: list[tuple[float, list[dict]]] = []
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/stocks") as ws:
                before = time.monotonic()  # the server's clock starts at the subscription
                await handshake(ws, "any", "AM.*")
                while True:
                    events = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if any(e.get("status") == REPLAY_COMPLETE for e in events):
                        return before, got
                    got += [(time.monotonic(), [e for e in events if e["ev"] == "AM"])]
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    before, received = asyncio.run(run())
    frames = [(t, events) for t, events in received if events]
    for _, events in frames:
        assert len({e["s"] for e in events}) == 1 and len(events) <= 1000  # Polygon-sized frames
        assert all(
            e["ev"] == "AM" and {"o", "h", "l", "c", "v", "av", "op"} <= set(e) for e in events
        )
    minutes = [events[0]["s"] for _, events in frames]
    # a minute comes together: its frames back to back (2500 bars: 3 frames), minutes in order
    assert minutes == sorted(minutes) and len(minutes) == 9
    assert [minutes.count(m) for m in sorted(set(minutes))] == [3, 3, 3]
    # paced, never early (a loaded machine only delays): minute k is due k spacings after the
    # clock starts, which is after `before`
    starts = [frames[minutes.index(m)][0] for m in sorted(set(minutes))]
    assert all(start - before >= k * spacing_s for k, start in enumerate(starts)), starts
