"""Rolling per-symbol features as incremental state, shared by streaming, training and backtest.

Every feature used by the models is scale-free (z-scores and ratios against the symbol's own recent
history), so one model serves symbols as different as VOO and TSLA. Each feature is named once, in
FEATURE_NAMES; Feast views, models and the API all take the names from here.
"""

from __future__ import annotations

import math
import statistics
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from operator import mul
from typing import Any, NamedTuple

from tickwatch.calendar import DEFAULT_CALENDAR, Calendar, calendar
from tickwatch.schemas import MINUTE_MS
from tickwatch.settings import BETA_WINDOW, MARKET_SYMBOL

Z_CLIP = 50.0
SIGMA_FLOOR = 1e-5  # 0.1 bp per minute: keeps z-scores finite on a frozen price
MAD_NORMAL = 0.6745  # median |x| of a standard normal: turns a median deviation into sigmas
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
    "bar_range",  # (high - low) / close
    "transactions_z_20",  # log1p(transactions) z-score against the previous 20 bars
    "beta",  # rolling beta to the market proxy over the previous `beta_window` bars
    "relative_return",  # log_return - beta * market return
    "relative_return_z",  # relative_return over the std of previous residuals
    "relative_cum_z_15",  # sum of the last 15 residuals over std * sqrt(15): slow decoupling
    "minutes_since_last_bar",  # gap to the previous bar within the session (1 = none missing)
    "unchanged_close_run",  # consecutive bars closing exactly where the previous one closed
    "session_open",  # 1 on the symbol's first bar of a trading day (its return spans the gap)
    "market_known",  # 1 when the market proxy's return for this minute was known
    "market_return_z",  # the market return over the std of the previous `beta_window` ones
    "market_volume_z",  # the market proxy's volume surprise in the same minute (0 if unknown)
    "volume_excess",  # log1p(volume) above its expected level: volume_surprise in log units
    "market_volume_excess",  # the market proxy's volume_excess in the same minute (0 if unknown)
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

# features added after feature vectors were first published, with the value a vector written
# before them reads (0: no volume excess, none known for the market): a score worker meets such
# vectors in the features topic after an upgrade
ADDED_FEATURES: dict[str, float] = {"volume_excess": 0.0, "market_volume_excess": 0.0}

WARM_BARS = RETURN_WINDOW + 1
# SymbolState's float windows that make up its persisted state (with the scalars and `tod`)
PERSISTED_WINDOWS = (
    "returns",
    "log_volumes",
    "log_transactions",
    "ranges",
    "pair_r",
    "pair_m",
    "residuals",
)


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


def _std(total: float, squares: float, n: int) -> float:
    """Sample std (ddof=1) from a window's sum and sum of squares; 0 below two values or on a
    constant window (up to rounding of the one-pass formula). Windows are re-summed on every bar
    (no running sums, so no drift)."""
    if n < 2:
        return 0.0
    mean = total / n
    var = (squares - n * mean * mean) / (n - 1)
    if var <= 1e-12 * mean * mean:
        return 0.0
    return math.sqrt(var)


def _zscore(x: float, total: float, squares: float, n: int, min_n: int = 2) -> float:
    """x against a window's mean and sample std (from its sum and sum of squares), clipped; 0
    below `min_n` values or on a constant window."""
    std = _std(total, squares, n)
    if n < min_n or std == 0.0:
        return 0.0
    return _clip((x - total / n) / std)


def _robust_z(x: float, window: Sequence[float]) -> float | None:
    """x against a window's median and its median absolute deviation (scaled to a standard
    deviation), clipped; None below two values or where that deviation is 0 (a window mostly
    of one value): the plain z-score then stands."""
    if len(window) < 2:
        return None
    median = statistics.median(window)
    mad = statistics.median([abs(v - median) for v in window])
    return _clip((x - median) * MAD_NORMAL / mad) if mad > 1e-12 else None


def _clip(x: float) -> float:
    return Z_CLIP if x > Z_CLIP else (-Z_CLIP if x < -Z_CLIP else x)


_calendar: list[Calendar] = []  # the process's active calendar (see use_calendar)


def use_calendar(name: str) -> Calendar:
    """Make `name` (an exchange_calendars name: XNYS, CMES, 24/7, ...) this process's calendar:
    every session and minute of day below comes from it. Entry points call it from
    `features.calendar`."""
    cal = calendar(name)
    if not _calendar or _calendar[0] is not cal:
        _calendar[:] = [cal]
        session_slot.cache_clear()
    return cal


def active_calendar() -> Calendar:
    """The calendar in use (the default, XNYS, until `use_calendar` names another)."""
    return _calendar[0] if _calendar else use_calendar(DEFAULT_CALENDAR)


@lru_cache(maxsize=8192)
def session_slot(start_ms: int) -> tuple[int, int]:
    """(session date as yyyymmdd, minute of the exchange's day) in the active calendar (cached:
    every symbol's bar of a minute asks for the same one)."""
    return active_calendar().slot(start_ms)


FLOAT_MIN = sys.float_info.min  # the smallest normal float: below it a ratio has lost digits


def log_return(close: float, last_close: float, first: bool) -> float:
    """A bar's log return, ln(close / the previous close); 0 for a series' first bar.

    Prices that are each valid but hundreds of orders of magnitude apart (1e-300 after 1e300)
    overflow or underflow the ratio (to infinity, 0 or a subnormal that has lost digits): the
    difference of the two logs is then taken, which is finite and exact to rounding for any two
    positive finite prices (ln(0) would raise and stop the stage on a bar it cannot get past)."""
    if first:
        return 0.0
    ratio = close / last_close
    if FLOAT_MIN <= ratio < math.inf:
        return math.log(ratio)
    return math.log(close) - math.log(last_close)


def opens_session(features: Mapping[str, float]) -> bool:
    """True when a feature vector is its symbol's first bar of a trading day (the
    `session_open` feature: its return spans the overnight gap)."""
    return features["session_open"] > 0


def volume_surprise(volume_z_tod: float, volume_z_20: float) -> float:
    """How unusual a bar's volume is: the mean of its z-scores against the same minute on
    earlier days and against the last 20 bars (the latter alone before there is a profile)."""
    return 0.5 * (volume_z_tod + volume_z_20) if volume_z_tod != 0.0 else volume_z_20


def volume_excess(log_volume: float, mean_20: float | None, mean_tod: float | None) -> float:
    """`volume_surprise` in log units, without its standard deviations: the bar's log volume
    above `mean_20` (the mean of the last 20 bars; None before two bars: 0), averaged with its
    excess over `mean_tod` (the same minute's mean on earlier days, where `volume_z_tod` is
    read; else None). A market-wide surge lifts the log volume of every stock by about as much,
    while the z-scores of the same rise differ by each window's estimated deviation: the
    excesses compare across symbols, the z-scores do not."""
    if mean_20 is None:
        return 0.0
    over_20 = log_volume - mean_20
    return over_20 if mean_tod is None else 0.5 * (log_volume - mean_tod + over_20)


class SymbolState:
    """Everything one symbol's features need from its past; JSON-serialisable for Faust tables.

    Windows are contiguous float64 arrays, oldest first, trimmed to their length on append: a
    10,000-symbol state is walked on every bar, and scattered float objects made that walk (and
    the state records, now a memory copy) wait on memory. Beside the windows it keeps their
    element-wise products (squares, return x market return), derived and never persisted:
    summing a stored product window is much cheaper than summing products made on the fly, and
    gives the same bits. Windows loaded from outside go through `load_windows`, which trims them
    and rebuilds the products.
    """

    __slots__ = (
        "last_start_ms",
        "last_close",
        "last_day",
        "bars_seen",
        "unchanged_run",
        *PERSISTED_WINDOWS,
        "tod",
        "beta_window",
        "returns_sq",
        "log_volumes_sq",
        "log_transactions_sq",
        "residuals_sq",
        "pair_mm",
        "pair_rm",
    )

    def __init__(self, beta_window: int = BETA_WINDOW) -> None:
        self.last_start_ms = -1
        self.last_close = 0.0
        self.last_day = 0
        self.bars_seen = 0
        self.unchanged_run = 0
        self.beta_window = beta_window
        self.returns = array("d")  # the last RETURN_WINDOW log returns
        self.log_volumes = array("d")  # VOLUME_WINDOW each
        self.log_transactions = array("d")
        self.ranges = array("d")
        self.pair_r = array("d")  # own returns, the last beta_window with a known market return
        self.pair_m = array("d")  # market returns, same minutes
        self.residuals = array("d")  # RETURN_WINDOW
        self.tod: dict[int, array[float]] = {}  # minute of day -> last TOD_DAYS log volumes
        self.returns_sq = array("d")
        self.log_volumes_sq = array("d")
        self.log_transactions_sq = array("d")
        self.residuals_sq = array("d")
        self.pair_mm = array("d")  # market return squared
        self.pair_rm = array("d")  # own x market return

    def load_windows(self, windows: Mapping[str, Iterable[float]]) -> None:
        """Extend the named windows (PERSISTED_WINDOWS), keep each to its length and rebuild
        the derived products."""
        for name, values in windows.items():
            if name not in PERSISTED_WINDOWS:
                raise ValueError(f"{name} is not a persisted window")
            window = getattr(self, name)
            window.extend(values)
            del window[: -self._window_len(name)]
        if len(self.pair_r) != len(self.pair_m):
            raise ValueError("pair_r and pair_m differ in length")
        for window, squares in (
            (self.returns, self.returns_sq),
            (self.log_volumes, self.log_volumes_sq),
            (self.log_transactions, self.log_transactions_sq),
            (self.residuals, self.residuals_sq),
        ):
            squares[:] = array("d", map(mul, window, window))
        self.pair_mm[:] = array("d", map(mul, self.pair_m, self.pair_m))
        self.pair_rm[:] = array("d", map(mul, self.pair_r, self.pair_m))

    def _window_len(self, name: str) -> int:
        if name in ("pair_r", "pair_m"):
            return self.beta_window
        return (
            VOLUME_WINDOW
            if name in ("log_volumes", "log_transactions", "ranges")
            else RETURN_WINDOW
        )

    def update(
        self,
        bar: Any,
        market_return: float | None,
        market_volume_z: float | None = None,
        market_volume_excess: float = 0.0,
    ) -> dict[str, float] | None:
        """Advance by one closed bar; None (state unchanged) if the bar is not newer than the last.

        `market_return` is the market proxy's log return for the same minute, or None when the
        market bar for that minute is unknown (the relative features then read 0).
        `market_volume_z` is the proxy's `volume_surprise` of that minute; None with a market
        return means this bar is the proxy's own (its volume surprise is the market's).
        `market_volume_excess` is the proxy's `volume_excess` of that minute (read with
        `market_volume_z`).
        """
        start = int(bar.start_ms)
        if start <= self.last_start_ms:
            return None
        close = float(bar.close)
        day, minute = session_slot(start)
        first = self.bars_seen == 0
        r = log_return(close, self.last_close, first)

        # the previous returns (the base sigma), then the last 4, 14 and 59 of them with r: each
        # window summed left to right, so the figures do not depend on how they are computed
        returns = self.returns
        n = len(returns)
        squares = self.returns_sq
        sigma = _std(sum(returns), sum(squares), n)
        sigma = sigma if sigma > SIGMA_FLOOR else SIGMA_FLOOR
        has_base = n >= 2
        rr = r * r
        tail, tail_sq = returns[-4:], squares[-4:]
        vol5 = _std(sum(tail) + r, sum(tail_sq) + rr, len(tail) + 1)
        tail, tail_sq = returns[-14:], squares[-14:]
        vol15 = _std(sum(tail) + r, sum(tail_sq) + rr, len(tail) + 1)
        tail, tail_sq = returns[-59:], squares[-59:]
        vol60 = _std(sum(tail) + r, sum(tail_sq) + rr, len(tail) + 1)

        log_vol = math.log1p(float(bar.volume))
        log_tx = math.log1p(float(bar.transactions))
        volumes, txs, profile = self.log_volumes, self.log_transactions, self.tod.get(minute)
        rng = (float(bar.high) - float(bar.low)) / close
        ranges = self.ranges
        rng_mean = sum(ranges) / len(ranges) if ranges else 0.0
        vwap = float(bar.vwap)
        vwap_dev = (close - vwap) / vwap

        beta = self._beta()
        residual = 0.0 if market_return is None or first else r - beta * market_return
        residuals = self.residuals
        rn = len(residuals)
        res_sigma = _std(sum(residuals), sum(self.residuals_sq), rn)
        res_sigma = res_sigma if res_sigma > SIGMA_FLOOR else SIGMA_FLOOR
        run = residuals[1 - RESIDUAL_RUN :]

        opening = first or day != self.last_day
        gap = 1.0 if opening else (start - self.last_start_ms) / MINUTE_MS
        pn = len(self.pair_m)
        if market_return is None or first or pn < 2:
            market_z = 0.0
        else:
            m_sigma = _std(sum(self.pair_m), sum(self.pair_mm), pn)
            market_z = _clip(market_return / (m_sigma if m_sigma > SIGMA_FLOOR else SIGMA_FLOOR))
        unchanged = 0 if first or close != self.last_close else self.unchanged_run + 1

        nv, v_sum = len(volumes), sum(volumes)
        volume_z_20 = _zscore(log_vol, v_sum, sum(self.log_volumes_sq), nv)
        p_sum = sum(profile) if profile else 0.0
        volume_z_tod = (
            _zscore(log_vol, p_sum, sum(map(mul, profile, profile)), len(profile), TOD_MIN_OBS)
            if profile
            else 0.0
        )
        excess = volume_excess(
            log_vol,
            v_sum / nv if nv >= 2 else None,
            p_sum / len(profile) if profile and volume_z_tod != 0.0 else None,
        )
        if market_return is None:
            market_volume, market_excess = 0.0, 0.0
        elif market_volume_z is None:
            # the market's reading of a market-wide volume surge, which the stocks' volume is
            # read against: robust to the proxy's own earlier spikes (a print, the last surge)
            # in its 20 bars, which would inflate a standard deviation and shrink the reading
            robust = _robust_z(log_vol, volumes)
            market_volume = volume_surprise(volume_z_tod, volume_z_20 if robust is None else robust)
            market_excess = excess
        else:
            market_volume, market_excess = market_volume_z, market_volume_excess
        feats = {
            "log_return": r,
            "return_z": _clip(r / sigma) if has_base else 0.0,
            "volatility_5": vol5,
            "volatility_15": vol15,
            "volatility_60": vol60,
            "vol_ratio_5": _clip(vol5 / sigma) if has_base else 1.0,
            "vol_ratio_15": _clip(vol15 / sigma) if has_base else 1.0,
            "volume_z_20": volume_z_20,
            "volume_z_tod": volume_z_tod,
            "vwap_deviation_z": _clip(vwap_dev / sigma) if has_base else 0.0,
            "range_ratio": _clip(rng / rng_mean) if rng_mean > 0 else 1.0,
            "bar_range": rng,
            "transactions_z_20": _zscore(log_tx, sum(txs), sum(self.log_transactions_sq), len(txs)),
            "beta": beta,
            "relative_return": residual,
            "relative_return_z": _clip(residual / res_sigma) if rn >= 2 else 0.0,
            "relative_cum_z_15": (
                _clip((sum(run) + residual) / (res_sigma * math.sqrt(len(run) + 1)))
                if rn >= 2
                else 0.0
            ),
            "minutes_since_last_bar": gap,
            "unchanged_close_run": min(float(unchanged), UNCHANGED_CAP),
            "session_open": 1.0 if opening else 0.0,
            "market_known": 0.0 if market_return is None else 1.0,
            "market_return_z": market_z,
            "market_volume_z": market_volume,
            "volume_excess": excess,
            "market_volume_excess": market_excess,
        }

        # append to each window, dropping its oldest value once full (a window and its
        # products always have the same length: load_windows rebuilds them together)
        if not first:
            returns.append(r)
            squares.append(rr)
            if len(returns) > RETURN_WINDOW:
                del returns[0], squares[0]
            if market_return is not None:
                pr, pm, mm, rm = self.pair_r, self.pair_m, self.pair_mm, self.pair_rm
                pr.append(r)
                pm.append(market_return)
                mm.append(market_return * market_return)
                rm.append(r * market_return)
                if len(pr) > self.beta_window:
                    del pr[0], pm[0], mm[0], rm[0]
                residuals.append(residual)
                self.residuals_sq.append(residual * residual)
                if len(residuals) > RETURN_WINDOW:
                    del residuals[0], self.residuals_sq[0]
        volumes.append(log_vol)
        self.log_volumes_sq.append(log_vol * log_vol)
        if len(volumes) > VOLUME_WINDOW:
            del volumes[0], self.log_volumes_sq[0]
        txs.append(log_tx)
        self.log_transactions_sq.append(log_tx * log_tx)
        if len(txs) > VOLUME_WINDOW:
            del txs[0], self.log_transactions_sq[0]
        ranges.append(rng)
        if len(ranges) > VOLUME_WINDOW:
            del ranges[0]
        if profile is None:
            profile = self.tod[minute] = array("d")
        profile.append(log_vol)
        if len(profile) > TOD_DAYS:
            del profile[0]
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
        var = sum(self.pair_mm) - n * m_mean * m_mean
        if var <= 1e-18:
            return 1.0
        cov = sum(self.pair_rm) - n * (sum(rs) / n) * m_mean
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
            "beta_window": self.beta_window,
            "residuals": list(self.residuals),
            "tod": {str(k): list(v) for k, v in self.tod.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SymbolState:
        s = cls(beta_window=int(d["beta_window"]))
        s.last_start_ms, s.last_close = int(d["last_start_ms"]), float(d["last_close"])
        s.last_day, s.bars_seen = int(d["last_day"]), int(d["bars_seen"])
        s.unchanged_run = int(d["unchanged_run"])
        s.load_windows({name: d[name] for name in PERSISTED_WINDOWS})
        s.tod = {int(k): array("d", v[-TOD_DAYS:]) for k, v in d["tod"].items()}
        return s


class MarketState:
    """The market proxy's last close, to turn its bars into market returns by minute."""

    def __init__(self, last_start_ms: int = -1, last_close: float = 0.0) -> None:
        self.last_start_ms = last_start_ms
        self.last_close = last_close

    @classmethod
    def of(cls, proxy: SymbolState) -> MarketState:
        """The market state the proxy's own SymbolState holds (its last bar and close): the
        features stage keeps that state only."""
        return cls(proxy.last_start_ms, proxy.last_close)

    def update(self, bar: Any) -> float | None:
        """The proxy's log return for this bar (0 for the first); None if not newer."""
        start = int(bar.start_ms)
        if start <= self.last_start_ms:
            return None
        r = log_return(float(bar.close), self.last_close, self.last_start_ms < 0)
        self.last_start_ms, self.last_close = start, float(bar.close)
        return r


def compute_features_batch(
    bars: Iterable[Any], market_symbol: str = MARKET_SYMBOL, beta_window: int = BETA_WINDOW
) -> Iterator[tuple[Any, dict[str, float], bool]]:
    """(bar, features, warm) for every bar in order, exactly as the streaming agents compute them.

    Bars are processed by start time; within one minute the market proxy goes first, which is the
    order the streaming agent enforces by waiting for the market bar of the minute.
    """
    ordered = sorted(bars, key=lambda b: (int(b.start_ms), b.symbol != market_symbol, b.symbol))
    market = MarketState()
    # minute -> the market's return, volume surprise and volume excess
    minutes: dict[int, tuple[float, float, float]] = {}
    states: dict[str, SymbolState] = {}
    for bar in ordered:
        state = states.get(bar.symbol)
        if state is None:
            state = states[bar.symbol] = SymbolState(beta_window)
        start = int(bar.start_ms)
        if bar.symbol == market_symbol:
            m = market.update(bar)
            feats = state.update(bar, m) if m is not None else None
            if m is not None and feats is not None:
                minutes[start] = (m, feats["market_volume_z"], feats["volume_excess"])
        else:
            known = minutes.get(start)
            feats = state.update(bar, *known) if known else state.update(bar, None)
        if feats is not None:
            yield bar, feats, state.warm
