"""The detector on real data it was never tuned on (mlfinpy's data, read in place): fitted on
each market's own history with the protocol of `tickwatch backtest --fit-days`, scored as the
stream scores. There are no labels: the alert rate and the largest real shocks are checked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from detection.detector import ANY_KIND_SHARE
from model_workers.backtest import fit_scorer, scored_frame, split_fit_days
from model_workers.evaluation import alerts_from_flags
from tickwatch.bar_files import read_daily_closes
from tickwatch.features import active_calendar, session_slot, use_calendar
from tickwatch.schemas import MinuteBar
from tickwatch.settings import Settings

EPOCHS = 2  # the autoencoder's share of the verdicts is small; the test stays quick


@contextmanager
def calendar(name: str) -> Iterator[None]:
    before = active_calendar().name
    use_calendar(name)
    try:
        yield
    finally:
        use_calendar(before)


def _settings(market_symbol: str) -> Settings:
    s = Settings(_env_file=None)
    return s.model_copy(
        update={"features": s.features.model_copy(update={"market_symbol": market_symbol})}
    )


def _events(df: pd.DataFrame, cooldown_minutes: int) -> np.ndarray:
    return alerts_from_flags(
        df["symbol"].to_numpy(),
        df["bar_start_ms"].to_numpy(),
        df["is_anomaly"].to_numpy(bool),
        cooldown_minutes,
    )


def es_minute_bars(data: Path) -> list[MinuteBar]:
    """The E-mini tape (Chicago clock) as one-minute bars."""
    raw = pd.read_csv(data / "tick_data.csv")
    ms = pd.to_datetime(raw["DateTime"]).dt.tz_localize("America/Chicago").astype("int64")
    tape = pd.DataFrame(
        {"minute": (ms // 1_000_000) // 60_000 * 60_000, "p": raw["Price"], "s": raw["Volume"]}
    )
    tape["n"] = tape["p"] * tape["s"]
    g = tape.groupby("minute", sort=True)
    ohlc = g["p"].agg(["first", "max", "min", "last"])
    vol, notional, count = g["s"].sum(), g["n"].sum(), g.size()
    return [
        MinuteBar(
            symbol="ES",
            start_ms=int(t),
            end_ms=int(t) + 60_000,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=float(vol[t]),
            vwap=min(max(notional[t] / vol[t], lo), h),
            transactions=int(count[t]),
            source="trades",
        )
        for t, (o, h, lo, c) in ohlc.iterrows()
    ]


def test_real_emini_minutes_fitted_on_their_first_session_do_not_flood(mlfinpy_data) -> None:
    settings = _settings("ES")
    with calendar("CMES"):  # Globex: Sunday 17:00 Chicago opens Monday's session
        bars = es_minute_bars(mlfinpy_data)
        fit, rest = split_fit_days(bars, 1)
        assert len({session_slot(b.start_ms)[0] for b in rest}) == 1
        df = scored_frame(fit_scorer(settings, fit, None, EPOCHS), rest, settings, fit)
    events = int(_events(df, settings.model.cooldown_minutes).sum())
    print(f"E-mini, one session of {len(df)} bars after a one-session fit: {events} alerts")
    # the holiday session it was fitted on (Labor Day) is calmer than the next, whose scores
    # run higher all day: past the budget of a kind of evidence each alert of that kind must be
    # ten times rarer than the last, past ANY_KIND_SHARE budgets every alert, so the session
    # does not flood (it held five alerts before the in-session escalation)
    assert events <= ANY_KIND_SHARE * settings.model.alerts_per_day
    assert df["score"].max() > 0  # scored, not silenced


def test_years_of_real_daily_bars_flag_the_largest_shocks_and_few_days(mlfinpy_data) -> None:
    settings = _settings("SPY")
    with calendar("XNYS"):
        # daily closes of 23 ETFs, 2008-2016, SPY among them
        bars = read_daily_closes(mlfinpy_data / "stock_prices.csv")
        cut = int(pd.Timestamp("2010-01-01", tz="UTC").value // 1_000_000)
        fit = [b for b in bars if b.start_ms < cut]
        rest = [b for b in bars if b.start_ms >= cut]
        scorer = fit_scorer(settings, fit, None, EPOCHS)
        df = scored_frame(scorer, rest, settings, fit)
    assert scorer.detector.interval_minutes == 1440 and not scorer.detector.skip_open
    share = float(df["is_anomaly"].mean())
    # the largest one-day moves of an ETF against the market (beta times SPY), seven years
    shocks = df[df["symbol"] != "SPY"].assign(size=lambda d: d["relative_return_z"].abs())
    top = shocks.nlargest(10, "size")
    print(f"{len(df)} ETF-days, {share:.2%} flagged; top shocks:\n{top[['symbol', 'size']]}")
    assert share <= 0.02
    assert int(top["is_anomaly"].sum()) >= 8
