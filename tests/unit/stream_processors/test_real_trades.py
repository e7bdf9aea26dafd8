"""500,000 real E-mini S&P 500 trades (mlfinpy's tick_data.csv) become minute bars that equal a
pandas resample of the same trades: open, high, low, close, volume, VWAP and count, exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stream_processors.bar_builder import ACCEPTED, MinuteBarBuilder
from tickwatch.schemas import MINUTE_MS, Trade

EXCHANGE_TZ = "America/Chicago"  # the tape's clock: Globex opens Sunday 17:00 Chicago time


def es_trades(data: Path) -> pd.DataFrame:
    """The tape as symbol, ms since the epoch (UTC), price, size, in tape order."""
    raw = pd.read_csv(data / "tick_data.csv")
    local = pd.to_datetime(raw["DateTime"]).dt.tz_localize(EXCHANGE_TZ)
    return pd.DataFrame(
        {
            "ms": (local.dt.tz_convert("UTC").astype("int64") // 1_000_000).to_numpy(),
            "price": raw["Price"].to_numpy(float),
            "size": raw["Volume"].to_numpy(float),
        }
    )


def test_real_trades_become_the_bars_a_pandas_resample_gives(mlfinpy_data: Path) -> None:
    tape = es_trades(mlfinpy_data)
    assert len(tape) == 500_000
    builder = MinuteBarBuilder(allowed_lateness_s=120)
    bars = []
    for offset, (ms, price, size) in enumerate(tape.itertuples(index=False, name=None)):
        trade = Trade(symbol="ES", price=price, size=size, timestamp_ms=int(ms))
        assert builder.add(trade, 0, offset) == ACCEPTED  # the tape is in time order
        bars += builder.close_ready()
    closed_until = bars[-1].start_ms  # the last minutes stay open (no later trade closes them)

    minute = tape["ms"] - tape["ms"] % MINUTE_MS
    tape = tape.assign(minute=minute, notional=tape["price"] * tape["size"])
    g = tape[tape["minute"] <= closed_until].groupby("minute", sort=True)
    want = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum(),
            "vwap": g["notional"].sum() / g["size"].sum(),
            "transactions": g.size(),
        }
    )
    got = pd.DataFrame(
        [(b.open, b.high, b.low, b.close, b.volume, b.vwap, b.transactions) for b in bars],
        index=pd.Index([b.start_ms for b in bars], name="minute"),
        columns=want.columns,
    )
    assert len(got) > 2000 and list(got.index) == list(want.index)
    # quarter-point prices times whole contracts: every product and sum is exact in float64
    for column in want.columns:
        assert np.array_equal(got[column].to_numpy(), want[column].to_numpy()), column
