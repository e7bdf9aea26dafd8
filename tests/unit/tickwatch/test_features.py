"""tickwatch.features against a plain pandas computation, on generated multi-day bar series."""

from __future__ import annotations

import json
import math
import random
import sys

import numpy as np
import pytest
from features_reference import reference_features
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tickwatch.features import (
    FEATURE_NAMES,
    MODEL_FEATURES,
    Bar,
    MarketState,
    SymbolState,
    compute_features_batch,
    opens_session,
    session_slot,
)

DAY_MS = 86_400_000
SESSION_OPEN_UTC_MS = (14 * 60 + 30) * 60_000  # 09:30 New York in winter
FIRST_DAY_MS = 1_738_540_800_000  # 2025-02-03 00:00 UTC, a Monday (two weeks of NYSE sessions)


def make_bars(
    seed: int,
    symbols: tuple[str, ...] = ("AAA", "BBB", "VOO"),
    days: int = 5,
    minutes: int = 40,
    drop: float = 0.05,
    flat: float = 0.05,
) -> list[Bar]:
    """Random-walk minute bars over `days` weekdays, with missing minutes and unchanged closes."""
    rng = np.random.default_rng(seed)
    bars = []
    for symbol in symbols:
        price = float(rng.uniform(20, 500))
        for day in range(days):
            day_ms = FIRST_DAY_MS + (day + 2 * (day // 5)) * DAY_MS + SESSION_OPEN_UTC_MS
            for minute in range(minutes):
                if rng.random() < drop:
                    continue
                if rng.random() >= flat:
                    price *= math.exp(rng.normal(0, 0.002))
                spread = price * abs(rng.normal(0, 0.001))
                volume = float(rng.choice([0.0, rng.lognormal(8, 1)], p=[0.02, 0.98]))
                bars.append(
                    Bar(
                        symbol,
                        day_ms + minute * 60_000,
                        price,
                        price + spread,
                        price - spread,
                        price,
                        volume,
                        price + rng.normal(0, spread / 3),
                        int(rng.poisson(30)),
                    )
                )
    bars.sort(key=lambda b: b.start_ms)
    return [b._replace(vwap=max(b.vwap, 1e-3)) for b in bars]


def assert_close(got: dict[str, float], want: dict[str, float], key: object) -> None:
    for name in FEATURE_NAMES:
        assert math.isclose(got[name], want[name], rel_tol=1e-9, abs_tol=1e-9), (
            key,
            name,
            got[name],
            want[name],
        )


def batch(bars: list[Bar], **kw: object) -> dict[tuple[str, int], tuple[dict[str, float], bool]]:
    return {(b.symbol, b.start_ms): (f, w) for b, f, w in compute_features_batch(bars, **kw)}


def check_against_reference(bars: list[Bar], beta_window: int = 60) -> None:
    got = batch(bars, beta_window=beta_window)
    want = reference_features(bars, beta_window=beta_window)
    assert got.keys() == want.keys()
    for key, (feats, warm) in got.items():
        assert_close(feats, want[key], key)
        assert warm == want[key]["warm"]


def test_names_are_unique_and_model_features_a_subset() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(MODEL_FEATURES) <= set(FEATURE_NAMES)


def test_multi_day_series_matches_pandas() -> None:
    bars = make_bars(1, days=6, minutes=90)
    check_against_reference(bars)
    got = batch(bars)
    # the windows really filled: warm bars, minute-of-day z-scores and betas away from defaults
    assert any(w for _, w in got.values())
    assert any(f["volume_z_tod"] != 0 for f, _ in got.values())
    assert any(f["beta"] != 1.0 for f, _ in got.values())
    assert any(f["minutes_since_last_bar"] > 1 for f, _ in got.values())
    assert any(f["unchanged_close_run"] > 0 for f, _ in got.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    days=st.integers(1, 5),
    minutes=st.integers(5, 70),
    drop=st.sampled_from([0.0, 0.1, 0.4]),
    flat=st.sampled_from([0.0, 0.1, 0.6]),
    beta_window=st.sampled_from([12, 30, 60]),
)
def test_property_matches_pandas(
    seed: int, days: int, minutes: int, drop: float, flat: float, beta_window: int
) -> None:
    check_against_reference(
        make_bars(seed, days=days, minutes=minutes, drop=drop, flat=flat), beta_window=beta_window
    )


def test_market_bar_missing_for_a_minute_gives_no_residual() -> None:
    bars = make_bars(2, days=2, minutes=60)
    gone = {b.start_ms for b in bars if b.symbol == "VOO"}
    missing = sorted(gone)[70]
    bars = [b for b in bars if not (b.symbol == "VOO" and b.start_ms == missing)]
    check_against_reference(bars)
    got = batch(bars)
    assert got[("AAA", missing)][0]["relative_return"] == 0.0


def test_duplicates_and_late_bars_change_nothing() -> None:
    bars = make_bars(3, days=2, minutes=60)
    noisy = list(bars)
    rnd = random.Random(3)
    for _ in range(30):  # repeats of earlier bars, some with different values, appended late
        b = rnd.choice(bars)
        noisy.append(b._replace(close=b.close * 1.05, high=b.high * 1.05))
    state, clean_state = SymbolState(), SymbolState()
    for b in [b for b in bars if b.symbol == "AAA"]:
        clean_state.update(b, None)
    for b in [b for b in noisy if b.symbol == "AAA"]:
        state.update(b, None)
    assert state.to_dict() == clean_state.to_dict()
    assert batch(noisy) == batch(bars)  # the first copy of each (symbol, start) wins
    assert MarketState().update(bars[0]) == 0.0


def test_the_proxys_market_return_is_its_own_states_log_return() -> None:
    """The features stage reads the proxy's market return off its SymbolState
    (MarketState.of): the same return a MarketState fed every proxy bar gives."""
    proxy = [b for b in make_bars(4, days=2, minutes=30) if b.symbol == "VOO"]
    market, state = MarketState(), SymbolState()
    for bar in proxy:
        want = market.update(bar)
        got = MarketState.of(state).update(bar)
        assert got == want
        assert state.update(bar, got) is not None
    assert MarketState.of(state).update(proxy[-1]) is None  # not newer


def test_session_open_marks_each_symbols_first_bar_of_a_trading_day() -> None:
    bars = make_bars(5, days=3, minutes=30, drop=0.2)
    seen: set[tuple[str, int]] = set()
    for bar, feats, _ in compute_features_batch(bars):
        day = (bar.symbol, session_slot(bar.start_ms)[0])
        assert opens_session(feats) == (day not in seen)
        seen.add(day)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.floats(0.05, 0.95))
def test_state_round_trip_mid_stream_equals_uninterrupted(seed: int, cut: float) -> None:
    bars = [b for b in make_bars(seed, days=3, minutes=50) if b.symbol == "AAA"]
    rnd = np.random.default_rng(seed)
    market = [float(x) if rnd.random() > 0.1 else None for x in rnd.normal(0, 1e-3, len(bars))]
    whole, split = SymbolState(30), SymbolState(30)
    k = int(len(bars) * cut)
    want = [whole.update(b, m) for b, m in zip(bars, market, strict=True)]
    got = [split.update(b, m) for b, m in zip(bars[:k], market[:k], strict=True)]
    split = SymbolState.from_dict(json.loads(json.dumps(split.to_dict())))
    got += [split.update(b, m) for b, m in zip(bars[k:], market[k:], strict=True)]
    assert got == want
    assert split.to_dict() == whole.to_dict()


@pytest.mark.parametrize("close", [1e-3, 1e5])
def test_frozen_price_keeps_features_finite(close: float) -> None:
    state = SymbolState()
    for i in range(100):
        feats = state.update(
            Bar(
                "AAA",
                FIRST_DAY_MS + SESSION_OPEN_UTC_MS + i * 60_000,
                close,
                close,
                close,
                close,
                0.0,
                close,
                0,
            ),
            0.0,
        )
        assert feats is not None and all(math.isfinite(v) for v in feats.values())
    assert feats["unchanged_close_run"] == 60.0 and feats["return_z"] == 0.0


def test_loaded_windows_are_trimmed_and_their_products_rebuilt() -> None:
    bars = [b for b in make_bars(4, days=2, minutes=80) if b.symbol == "AAA"]
    market = [1e-4 * (i % 7 - 3) for i in range(len(bars))]
    whole = SymbolState(12)
    for b, m in zip(bars[:-1], market[:-1], strict=True):
        whole.update(b, m)
    d = whole.to_dict()
    padded = {
        name: [0.5] * 40 + d[name]  # older values beyond each window's length are dropped
        for name in ("returns", "log_volumes", "log_transactions", "ranges", "residuals")
    }
    loaded = SymbolState.from_dict({**d, **padded})
    assert loaded.to_dict() == d
    assert loaded.update(bars[-1], market[-1]) == whole.update(bars[-1], market[-1])
    with pytest.raises(ValueError, match="not a persisted window"):
        SymbolState().load_windows({"returns_sq": [1.0]})
    with pytest.raises(ValueError, match="differ in length"):
        SymbolState().load_windows({"pair_r": [0.1, 0.2], "pair_m": [0.1]})


def test_an_earlier_spike_in_the_proxys_window_does_not_shrink_its_market_volume_reading() -> None:
    """The proxy's market_volume_z (what a stock's volume surge is read against) uses the median
    and median deviation of its last 20 volumes: an earlier print among them inflates a standard
    deviation (its plain volume_z_20) but not the reading of a later market-wide surge."""
    rng = np.random.default_rng(7)
    start = FIRST_DAY_MS + SESSION_OPEN_UTC_MS
    volumes = [float(v) for v in rng.lognormal(8, 0.2, 30)]
    volumes[20] *= 30.0  # a block print five bars before the surge
    volumes[25] *= 4.0  # the market-wide surge
    state, market, price = SymbolState(), MarketState(), 100.0
    got = []
    for i, v in enumerate(volumes):
        price *= math.exp(rng.normal(0, 0.001))
        bar = Bar(
            "VOO", start + i * 60_000, price, price * 1.001, price * 0.999, price, v, price, 50
        )
        feats = state.update(bar, market.update(bar))
        assert feats is not None
        got.append(feats)
    surge = got[25]
    # the print inflates the standard deviation the plain z divides by; the median deviation not
    assert surge["volume_z_20"] < 2.5
    assert surge["market_volume_z"] > 4.0
    # a quiet bar reads as quiet either way
    assert abs(got[28]["market_volume_z"]) < 2.5


@given(
    st.lists(
        st.floats(min_value=5e-324, max_value=1.7e308, allow_nan=False, allow_infinity=False),
        min_size=2,
        max_size=6,
    )
)
@example(closes=[1e300, 1e-300])  # the ratio underflows to 0
@example(closes=[1e-300, 1e300])  # overflows
@example(closes=[1.0, 5e-320])  # a subnormal ratio, digits lost
@settings(max_examples=200, deadline=None)
def test_any_positive_finite_prices_give_finite_returns_and_never_raise(closes) -> None:
    """Each price is valid (positive, finite) however far from the last: 1e-300 after 1e300
    underflowed the ratio to 0 and ln(0) raised, a poison bar that stopped the stage each time it
    was read again. The return is then the difference of the logs."""
    state = SymbolState()
    start = FIRST_DAY_MS + SESSION_OPEN_UTC_MS
    for i, c in enumerate(closes):
        bar = Bar("AAA", start + i * 60_000, c, c, c, c, 100.0, c, 3)
        feats = state.update(bar, None)
        assert feats is not None and math.isfinite(feats["log_return"])
        if i:
            prev = closes[i - 1]
            assert feats["log_return"] == pytest.approx(math.log(c) - math.log(prev), abs=1e-9)
            if sys.float_info.min <= c / prev < math.inf:  # usual: the ratio's log, bit for bit
                assert feats["log_return"] == math.log(c / prev)
