"""Rolling per-symbol features as incremental state, shared by streaming, training and backtest.

Every feature used by the models is scale-free (z-scores and ratios against the symbol's own recent
history), so one model serves symbols as different as VOO and TSLA. Each feature is named once, in
FEATURE_NAMES; Feast views, models and the API all take the names from here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import mul
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
MARKET_TZ = ZoneInfo("America/New_York")
Z_CLIP = 50.0
SIGMA_FLOOR = 1e-5  # 0.1 bp per minute: keeps z-scores finite on a frozen price
VOLUME_WINDOW = 20
RETURN_WINDOW = 60
TOD_DAYS = 20
TOD_MIN_OBS = 3
BETA_MIN_PAIRS = 10
RESIDUAL_RUN = 15
UNCHANGED_CAP = 60.0

FEATURE_NAMES: tuple[str, ...] = (
    "log_return",  # ln(close / previous close)
    "return_z",  # log_return over the std of the previous 60 returns
    "volatility_5",  # std of the last 5 log returns (this bar included)
    "volatility_15",
    "volatility_60",
    "vol_ratio_5",  # volatility_5 over the previous-60 std: a burst reads > 1
    "vol_ratio_15",
    "volume_z_20",  # log1p(volume) z-score against the previous 20 bars
    "volume_z_tod",  # log1p(volume) z-score against the same minute of day on previous days
    "vwap_deviation_z",  # (close - vwap) / vwap over the previous-60 std
    "range_ratio",  # (high - low) / close over its mean on the previous 20 bars
    "transactions_z_20",  # log1p(transactions) z-score against the previous 20 bars
    "beta",  # rolling beta to the market proxy over the previous `beta_window` bars
    "relative_return",  # log_return - beta * market return
    "relative_return_z",  # relative_return over the std of previous residuals
    "relative_cum_z_15",  # sum of the last 15 residuals over std * sqrt(15): slow decoupling
    "minutes_since_last_bar",  # gap to the previous bar within the session (1 = none missing)
    "unchanged_close_run",  # consecutive bars closing exactly where the previous one closed
)

# What the models read: the scale-free subset (raw returns and vols differ 7x between symbols).
MODEL_FEATURES: tuple[str, ...] = (
    "return_z",
    "vol_ratio_5",
    "vol_ratio_15",
    "volume_z_20",
    "volume_z_tod",
    "vwap_deviation_z",
    "range_ratio",
    "transactions_z_20",
    "relative_return_z",
    "relative_cum_z_15",
    "minutes_since_last_bar",
    "unchanged_close_run",
)

WARM_BARS = RETURN_WINDOW + 1


class Bar(NamedTuple):
    """The fields of a minute bar the features read (MinuteBar has the same attribute names)."""

    symbol: str
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    transactions: int


def _mean_std(vals: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample std (ddof=1), 0 below two values; recomputed from the window, no drift."""
    n = len(vals)
    if n == 0:
        return 0.0, 0.0, 0
    mean = sum(vals) / n
    if n < 2:
        return mean, 0.0, n
    var = (sum(map(mul, vals, vals)) - n * mean * mean) / (n - 1)
    if var <= 1e-12 * mean * mean:  # a constant window, up to rounding of the one-pass formula
        return mean, 0.0, n
    return mean, math.sqrt(var), n


def _z(x: float, mean: float, std: float, n: int, min_n: int = 2) -> float:
    if n < min_n or std <= 0.0:
        return 0.0
    return max(-Z_CLIP, min(Z_CLIP, (x - mean) / std))


def _clip(x: float) -> float:
    return max(-Z_CLIP, min(Z_CLIP, x))


@lru_cache(maxsize=8192)
def session_slot(start_ms: int) -> tuple[int, int]:
    """(trading date as yyyymmdd, minute of day) in New York time (cached: every symbol's bar of
    a minute asks for the same one)."""
    dt = datetime.fromtimestamp(start_ms / 1000, tz=UTC).astimezone(MARKET_TZ)
    return dt.year * 10_000 + dt.month * 100 + dt.day, dt.hour * 60 + dt.minute


class SymbolState:
    """Everything one symbol's features need from its past; JSON-serialisable for Faust tables."""

    __slots__ = (
        "last_start_ms",
        "last_close",
        "last_day",
        "bars_seen",
        "unchanged_run",
        "returns",
        "log_volumes",
        "log_transactions",
        "ranges",
        "pair_r",
        "pair_m",
        "residuals",
        "tod",
    )

    def __init__(self, beta_window: int = 60) -> None:
        self.last_start_ms = -1
        self.last_close = 0.0
        self.last_day = 0
        self.bars_seen = 0
        self.unchanged_run = 0
        self.returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.log_volumes: deque[float] = deque(maxlen=VOLUME_WINDOW)
        self.log_transactions: deque[float] = deque(maxlen=VOLUME_WINDOW)
        self.ranges: deque[float] = deque(maxlen=VOLUME_WINDOW)
        self.pair_r: deque[float] = deque(maxlen=beta_window)  # own returns
        self.pair_m: deque[float] = deque(maxlen=beta_window)  # market returns, same minutes
        self.residuals: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.tod: dict[int, deque[float]] = {}

    def update(self, bar: Any, market_return: float | None) -> dict[str, float] | None:
        """Advance by one closed bar; None (state unchanged) if the bar is not newer than the last.

        `market_return` is the market proxy's log return for the same minute, or None when the
        market bar for that minute is unknown (the relative features then read 0).
        """
        start = int(bar.start_ms)
        if start <= self.last_start_ms:
            return None
        close = float(bar.close)
        day, minute = session_slot(start)
        first = self.bars_seen == 0
        r = 0.0 if first else math.log(close / self.last_close)

        base_mean, base_std, base_n = _mean_std(self.returns)
        sigma = max(base_std, SIGMA_FLOOR)
        recent = list(self.returns)
        vol5 = _mean_std([*recent[-4:], r])[1]
        vol15 = _mean_std([*recent[-14:], r])[1]
        vol60 = _mean_std([*recent[-59:], r])[1]
        has_base = base_n >= 2

        log_vol = math.log1p(float(bar.volume))
        vm, vs, vn = _mean_std(self.log_volumes)
        tm, ts, tn = _mean_std(self.tod.get(minute, ()))
        log_tx = math.log1p(float(bar.transactions))
        xm, xs, xn = _mean_std(self.log_transactions)
        rng = (float(bar.high) - float(bar.low)) / close
        rng_mean = sum(self.ranges) / len(self.ranges) if self.ranges else 0.0
        vwap_dev = (close - float(bar.vwap)) / float(bar.vwap)

        beta = self._beta()
        residual = 0.0 if market_return is None or first else r - beta * market_return
        rm, rs, rn = _mean_std(self.residuals)
        res_sigma = max(rs, SIGMA_FLOOR)
        run = [*list(self.residuals)[1 - RESIDUAL_RUN :], residual]

        gap = 1.0 if first or day != self.last_day else (start - self.last_start_ms) / MINUTE_MS
        unchanged = 0 if first or close != self.last_close else self.unchanged_run + 1

        feats = {
            "log_return": r,
            "return_z": _clip(r / sigma) if has_base else 0.0,
            "volatility_5": vol5,
            "volatility_15": vol15,
            "volatility_60": vol60,
            "vol_ratio_5": _clip(vol5 / sigma) if has_base else 1.0,
            "vol_ratio_15": _clip(vol15 / sigma) if has_base else 1.0,
            "volume_z_20": _z(log_vol, vm, vs, vn),
            "volume_z_tod": _z(log_vol, tm, ts, tn, TOD_MIN_OBS),
            "vwap_deviation_z": _clip(vwap_dev / sigma) if has_base else 0.0,
            "range_ratio": _clip(rng / rng_mean) if rng_mean > 0 else 1.0,
            "transactions_z_20": _z(log_tx, xm, xs, xn),
            "beta": beta,
            "relative_return": residual,
            "relative_return_z": _clip(residual / res_sigma) if rn >= 2 else 0.0,
            "relative_cum_z_15": (
                _clip(sum(run) / (res_sigma * math.sqrt(len(run)))) if rn >= 2 else 0.0
            ),
            "minutes_since_last_bar": gap,
            "unchanged_close_run": min(float(unchanged), UNCHANGED_CAP),
        }

        if not first:
            self.returns.append(r)
            if market_return is not None:
                self.pair_r.append(r)
                self.pair_m.append(market_return)
                self.residuals.append(residual)
        self.log_volumes.append(log_vol)
        self.log_transactions.append(log_tx)
        self.ranges.append(rng)
        self.tod.setdefault(minute, deque(maxlen=TOD_DAYS)).append(log_vol)
        self.last_start_ms, self.last_close, self.last_day = start, close, day
        self.bars_seen += 1
        self.unchanged_run = unchanged
        return feats

    def _beta(self) -> float:
        """cov(r, m) / var(m) over the stored pairs; 1 until enough pairs."""
        n = len(self.pair_m)
        if n < BETA_MIN_PAIRS:
            return 1.0
        rs, ms = self.pair_r, self.pair_m
        m_mean = sum(ms) / n
        var = sum(map(mul, ms, ms)) - n * m_mean * m_mean
        if var <= 1e-18:
            return 1.0
        cov = sum(map(mul, rs, ms)) - n * (sum(rs) / n) * m_mean
        return max(-5.0, min(5.0, cov / var))

    @property
    def warm(self) -> bool:
        """True once the 60-return window is full."""
        return self.bars_seen >= WARM_BARS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot (floats round-trip exactly through JSON)."""
        return {
            "last_start_ms": self.last_start_ms,
            "last_close": self.last_close,
            "last_day": self.last_day,
            "bars_seen": self.bars_seen,
            "unchanged_run": self.unchanged_run,
            "returns": list(self.returns),
            "log_volumes": list(self.log_volumes),
            "log_transactions": list(self.log_transactions),
            "ranges": list(self.ranges),
            "pair_r": list(self.pair_r),
            "pair_m": list(self.pair_m),
            "beta_window": self.pair_m.maxlen,
            "residuals": list(self.residuals),
            "tod": {str(k): list(v) for k, v in self.tod.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SymbolState:
        s = cls(beta_window=int(d["beta_window"]))
        s.last_start_ms, s.last_close = int(d["last_start_ms"]), float(d["last_close"])
        s.last_day, s.bars_seen = int(d["last_day"]), int(d["bars_seen"])
        s.unchanged_run = int(d["unchanged_run"])
        s.returns.extend(d["returns"])
        s.log_volumes.extend(d["log_volumes"])
        s.log_transactions.extend(d["log_transactions"])
        s.ranges.extend(d["ranges"])
        s.pair_r.extend(d["pair_r"])
        s.pair_m.extend(d["pair_m"])
        s.residuals.extend(d["residuals"])
        s.tod = {int(k): deque(v, maxlen=TOD_DAYS) for k, v in d["tod"].items()}
        return s


class MarketState:
    """The market proxy's last close, to turn its bars into market returns by minute."""

    def __init__(self) -> None:
        self.last_start_ms = -1
        self.last_close = 0.0

    def update(self, bar: Any) -> float | None:
        """The proxy's log return for this bar (0 for the first); None if not newer."""
        start = int(bar.start_ms)
        if start <= self.last_start_ms:
            return None
        r = 0.0 if self.last_start_ms < 0 else math.log(float(bar.close) / self.last_close)
        self.last_start_ms, self.last_close = start, float(bar.close)
        return r


def compute_features_batch(
    bars: Iterable[Any], market_symbol: str = "VOO", beta_window: int = 60
) -> Iterator[tuple[Any, dict[str, float], bool]]:
    """(bar, features, warm) for every bar in order, exactly as the streaming agents compute them.

    Bars are processed by start time; within one minute the market proxy goes first, which is the
    order the streaming agent enforces by waiting for the market bar of the minute.
    """
    ordered = sorted(bars, key=lambda b: (int(b.start_ms), b.symbol != market_symbol, b.symbol))
    market = MarketState()
    market_returns: dict[int, float] = {}
    states: dict[str, SymbolState] = {}
    for bar in ordered:
        if bar.symbol == market_symbol:
            m = market.update(bar)
            if m is not None:
                market_returns[int(bar.start_ms)] = m
        state = states.get(bar.symbol)
        if state is None:
            state = states[bar.symbol] = SymbolState(beta_window)
        feats = state.update(bar, market_returns.get(int(bar.start_ms)))
        if feats is not None:
            yield bar, feats, state.warm
