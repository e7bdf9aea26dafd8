"""The simulated market: deterministic, realistic per-symbol statistics, sensible labels."""

from __future__ import annotations

import numpy as np
import pytest

from producers.market_sim import (
    BARS_PER_DAY,
    bars_to_frame,
    labels_to_frame,
    recent_start_day,
    session_open_ms,
    simulate,
    trades_for,
)

SYMBOLS = ["AAPL", "GOOGL", "MSFT", "TSLA", "VOO"]


@pytest.fixture(scope="module")
def sim():
    return simulate(SYMBOLS, days=10, seed=11)


def test_same_seed_same_market(sim) -> None:
    again = simulate(SYMBOLS, days=10, seed=11)
    assert again.bars == sim.bars and again.labels == sim.labels
    other = simulate(SYMBOLS, days=10, seed=12)
    assert other.bars != sim.bars


def test_session_layout(sim) -> None:
    df = bars_to_frame(sim.bars)
    assert len(df) == 10 * BARS_PER_DAY * len(SYMBOLS)
    assert list(df.columns) == [
        "symbol",
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "transactions",
    ]
    assert df["timestamp"].is_monotonic_increasing
    first = sim.trading_days[0]
    assert df["timestamp"].min() == session_open_ms(first)  # 09:30 New York
    assert all(d.weekday() < 5 for d in sim.trading_days)
    assert {b.source for b in sim.bars} == {"replay"}


def test_volatility_tails_and_volume_shape() -> None:
    clean = bars_to_frame(simulate(SYMBOLS, days=20, seed=3, inject=False).bars)
    vols = {}
    for sym, g in clean.groupby("symbol"):
        r = np.log(g["close"] / g["open"])
        vols[sym] = r.std() * np.sqrt(252 * BARS_PER_DAY)
        assert r.kurt() > 1.0, f"{sym} returns are not fat-tailed"
    assert vols["TSLA"] > vols["GOOGL"] > vols["AAPL"] > vols["VOO"]
    assert vols["TSLA"] == pytest.approx(0.48, rel=0.15)
    assert vols["VOO"] == pytest.approx(0.07, rel=0.15)
    minute = (clean["timestamp"] - clean["timestamp"].min()) // 60_000 % (24 * 60)
    by_minute = clean.groupby(minute)["volume"].mean().to_numpy()
    assert by_minute[:15].mean() > 1.5 * by_minute[150:240].mean()  # U shape: busy open
    assert by_minute[-15:].mean() > 1.3 * by_minute[150:240].mean()  # and busy close
    wide = clean.pivot(index="timestamp", columns="symbol", values="close")
    corr = np.log(wide).diff().corr()
    assert (corr.loc["VOO", ["AAPL", "GOOGL", "MSFT", "TSLA"]] > 0.15).all()  # market factor


def test_labels_mark_clearly_unusual_bars(sim) -> None:
    labels = labels_to_frame(sim.labels)
    per_day = labels.groupby(["symbol", labels["start"] // 86_400_000]).size()
    assert per_day.between(1, 3).all()
    assert set(labels["type"]) <= {
        "volume_spike",
        "price_jump",
        "flash_crash",
        "volatility_burst",
        "stale_price",
        "decoupling",
    }
    assert not (labels[labels["symbol"] == "VOO"]["type"] == "decoupling").any()
    df = bars_to_frame(sim.bars)
    for sym, g in df.groupby("symbol"):
        g = g.set_index("timestamp")
        ret = np.log(g["close"] / g["open"])
        sigma = ret.std()
        for lb in labels[labels["symbol"] == sym].itertuples():
            window = g.loc[lb.start : lb.end]
            median_vol = g["volume"].median()
            if lb.type == "price_jump":
                assert abs(np.log(window["close"] / window["open"])).max() > 5 * sigma
            elif lb.type == "volume_spike":
                assert window["volume"].max() > 3 * median_vol
            elif lb.type == "stale_price":
                assert window["close"].nunique() == 1 and (window["high"] == window["low"]).all()
                assert window["volume"].max() < 100
            elif lb.type == "flash_crash":
                path = np.log(window["close"]).to_numpy()
                assert path.min() - np.log(window["open"].iloc[0]) < -8 * sigma


def test_recent_start_day_ends_before_today() -> None:
    import datetime as dt

    wed = dt.date(2026, 11, 25)
    assert recent_start_day(1, wed) == dt.date(2026, 11, 24)
    assert recent_start_day(3, wed) == dt.date(2026, 11, 20)  # Tue, Mon, and Friday before
    days = simulate(["AAPL"], days=3, seed=1, start_day=recent_start_day(3, wed)).trading_days
    assert days[-1] == dt.date(2026, 11, 24)


def test_trades_match_their_bar(sim) -> None:
    for bar in sim.bars[:200:7]:
        trades = trades_for(bar)
        assert trades == trades_for(bar)
        assert len(trades) == min(bar.transactions, int(bar.volume))
        if not trades:
            continue
        assert sum(t.size for t in trades) == bar.volume
        assert trades[0].price == bar.open and trades[-1].price == bar.close
        assert all(bar.low <= t.price <= bar.high for t in trades)
        assert all(bar.start_ms <= t.timestamp_ms < bar.end_ms for t in trades)
