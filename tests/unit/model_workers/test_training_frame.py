"""Training reads the features as the stream computed them: no column is recomputed."""

from __future__ import annotations

import math

import numpy as np
from pandas.testing import assert_frame_equal

from feature_repo.materialize import features_frame
from feature_repo.sources import TIMESTAMP_FIELD
from model_workers import dataset
from tickwatch.bar_store import bars_from_frame, bars_to_frame
from tickwatch.features import compute_features_batch, opens_session
from tickwatch.schemas import MINUTE_MS, MinuteBar
from tickwatch.settings import Settings

DAY_MS = 86_400_000
OPEN_MS = 1_738_593_000_000  # 2025-02-03 09:30 New York, a Monday


def minute_bars(symbols: tuple[str, ...] = ("AAA", "VOO"), days: int = 3) -> list[MinuteBar]:
    """Random-walk bars over `days` sessions of 70 minutes, some minutes missing."""
    rng = np.random.default_rng(1)
    bars = []
    for symbol in symbols:
        price = 100.0
        for day in range(days):
            for minute in range(70):
                if rng.random() < 0.1:
                    continue
                start = OPEN_MS + day * DAY_MS + minute * MINUTE_MS
                price *= math.exp(rng.normal(0, 0.002))
                bars.append(
                    MinuteBar(
                        symbol=symbol,
                        start_ms=start,
                        end_ms=start + MINUTE_MS,
                        open=price,
                        high=price * 1.001,
                        low=price * 0.999,
                        close=price,
                        volume=float(rng.lognormal(8, 1)),
                        vwap=price,
                        transactions=int(rng.integers(1, 100)),
                        source="csv",
                    )
                )
    return bars


def test_session_open_and_warm_in_training_are_the_streams() -> None:
    bars = minute_bars()
    stream = {
        (b.symbol, int(b.start_ms)): (opens_session(f), w)
        for b, f, w in compute_features_batch(bars)
    }
    frame = dataset.frame_from_bars(bars)
    got = {
        (s, int(t)): (o, w)
        for s, t, o, w in frame[["symbol", "bar_start_ms", "session_open", "warm"]].itertuples(
            index=False, name=None
        )
    }
    assert got == stream
    assert frame["session_open"].dtype == bool
    assert frame.groupby("symbol")["session_open"].sum().tolist() == [3, 3]  # one per session
    assert frame["warm"].any() and not frame["warm"].all()


def test_the_offline_store_rows_make_the_same_training_frame() -> None:
    """What training reads from Feast (the materialized rows, in whatever order the join gives
    them) equals the frame computed from the stored bars."""
    stored = bars_to_frame(minute_bars())
    offline = features_frame(Settings(), stored)
    joined = offline.assign(
        bar_start_ms=offline[TIMESTAMP_FIELD].astype("int64") // 1_000_000
    ).sample(frac=1.0, random_state=0)
    assert_frame_equal(
        dataset.training_frame(joined), dataset.frame_from_bars(bars_from_frame(stored))
    )
