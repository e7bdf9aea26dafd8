"""Deterministic simulated market: realistic minute bars with labelled injected anomalies.

Per-symbol annual volatility, a common market factor (VOO is the market proxy) with per-symbol
beta, Student-t tails, a U-shaped intraday volume and volatility profile; 09:30-16:00 New York on
NYSE sessions (weekdays that are not exchange holidays), 390 bars a day. The same seed always
gives the same bars, labels and trades.

A `MarketFamily` sets how normal behaviour looks (tail heaviness, volume noise, intraday profile,
block prints, market-wide moves, volatility regimes, how often anomalies happen).
`MarketFamily()` is the replay feed's market; `MarketFamily.draw(seed)` gives a random other
one, so the detector can be measured on markets it was not tuned on. The normal events a family
adds (block prints, market moves) are listed in `SimResult.normal_events`: alerts on them are
false alarms a report can count.
"""

from __future__ import annotations

import datetime as dt
import string
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np

from producers import anomaly_injection as inj
from tickwatch.bar_store import bars_to_frame, labels_to_frame
from tickwatch.schemas import MINUTE_MS, AnomalyLabel, MinuteBar, Trade
from tickwatch.settings import MARKET_SYMBOL

NEW_YORK = ZoneInfo("America/New_York")
BARS_PER_DAY = inj.BARS_PER_DAY
DEFAULT_START_DAY = dt.date(2025, 3, 3)  # a Monday; fixed so every run is reproducible
_MINUTES_PER_YEAR = 252 * BARS_PER_DAY
_DF = 5  # Student-t degrees of freedom for fat tails
__all__ = [
    "MarketFamily",
    "WholeMarket",
    "NormalEvent",
    "SimResult",
    "bars_to_frame",
    "labels_to_frame",
    "simulate",
    "ticker_names",
    "trades_for",
]


@dataclass(frozen=True)
class SymbolProfile:
    """How one symbol behaves: annual vol, market beta, start price, daily volume, trade size."""

    annual_vol: float
    beta: float
    price: float
    daily_volume: float
    trade_size: float


PROFILES: dict[str, SymbolProfile] = {
    "AAPL": SymbolProfile(0.16, 1.1, 190.0, 50e6, 2500),
    "GOOGL": SymbolProfile(0.20, 1.15, 140.0, 25e6, 1500),
    "MSFT": SymbolProfile(0.18, 1.0, 410.0, 20e6, 1000),
    "TSLA": SymbolProfile(0.48, 1.8, 250.0, 90e6, 4000),
    "VOO": SymbolProfile(0.07, 1.0, 470.0, 5e6, 400),
}


def profile_for(symbol: str) -> SymbolProfile:
    """The symbol's profile; unknown symbols get a stable made-up one."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    h = zlib.crc32(symbol.encode())
    return SymbolProfile(
        0.15 + (h % 30) / 100,
        0.8 + (h % 7) / 10,
        20.0 + h % 300,
        5e6 + (h % 20) * 1e6,
        500 + h % 1000,
    )


@dataclass(frozen=True)
class MarketFamily:
    """How normal behaviour looks; the defaults are the replay feed's market."""

    tail_df: float = _DF  # Student-t degrees of freedom of every return
    volume_noise: float = 0.3  # sigma of log volume around its intraday profile
    volume_return_coupling: float = 0.15  # log volume rises by this times |return / sigma|
    open_boost: float = 1.2  # extra activity at the open (decays over ~the first 15 minutes)
    close_boost: float = 0.5  # extra activity into the close
    lunch_depth: float = 2.2  # curvature of the U (0 = flat day)
    vol_scale: float = 1.0  # multiplies every symbol's annual volatility
    day_vol_sigma: float = 0.0  # log-normal day-to-day volatility regime (0 = none)
    regime_switch_prob: float = 0.0  # chance per symbol-day of a volatility shift mid-session
    block_print_rate: float = 0.0  # one-bar block prints per symbol-day (Poisson)
    block_print_size: tuple[float, float] = (5.0, 20.0)  # the print's volume, bar-volume multiples
    market_event_rate: float = 0.0  # market-wide moves per day (Poisson), every stock by its beta
    market_event_sigmas: tuple[float, float] = (5.0, 10.0)  # their size in market sigmas
    anomalies_per_day: tuple[int, int] = (1, 3)  # anomalies per symbol-day, inclusive range
    anomaly_scale: float = 1.0  # multiplies the injected anomalies' sizes

    @classmethod
    def draw(cls, seed: int) -> MarketFamily:
        """A random family: every normal-behaviour parameter drawn from a wide range."""
        r = np.random.default_rng([seed, 0xFA])
        lo_bp = float(r.uniform(3, 8))
        lo_me = float(r.uniform(3, 6))
        return cls(
            tail_df=float(r.choice([2.5, 3.0, 4.0, 6.0, 10.0, 30.0])),
            volume_noise=float(r.uniform(0.15, 0.6)),
            volume_return_coupling=float(r.uniform(0.0, 0.3)),
            open_boost=float(r.uniform(0.3, 3.0)),
            close_boost=float(r.uniform(0.1, 1.5)),
            lunch_depth=float(r.uniform(0.0, 4.0)),
            vol_scale=float(np.exp(r.uniform(np.log(0.5), np.log(2.0)))),
            day_vol_sigma=float(r.uniform(0.0, 0.4)),
            regime_switch_prob=float(r.uniform(0.0, 0.3)),
            block_print_rate=float(r.uniform(0.0, 3.0)),
            block_print_size=(lo_bp, lo_bp * float(r.uniform(1.5, 4.0))),
            market_event_rate=float(r.uniform(0.0, 2.0)),
            market_event_sigmas=(lo_me, lo_me * float(r.uniform(1.3, 2.0))),
            anomalies_per_day=(0, int(r.integers(1, 4))),
            anomaly_scale=float(r.uniform(0.8, 1.3)),
        )


DEFAULT_FAMILY = MarketFamily()


@dataclass(frozen=True)
class NormalEvent:
    """A normal event the family added: bars [start_ms, end_ms] of `symbol` ("*" = every one)."""

    symbol: str
    start_ms: int
    end_ms: int
    kind: str  # "block_print" or "market_move"


@dataclass
class SimResult:
    """Simulated bars (sorted by start then symbol) and the injected-anomaly labels."""

    bars: list[MinuteBar]
    labels: list[AnomalyLabel]
    trading_days: list[dt.date] = field(default_factory=list)
    normal_events: list[NormalEvent] = field(default_factory=list)


def trading_days(start: dt.date, count: int) -> list[dt.date]:
    """`count` NYSE sessions from `start` (inclusive): weekdays that are not exchange holidays."""
    sessions = _nyse_sessions()
    out: list[dt.date] = []
    day = start
    while len(out) < count:
        if _is_session(day, sessions):
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def _nyse_sessions() -> set[int]:
    from tickwatch.calendar import calendar

    return set(calendar("XNYS").labels)


def _is_session(day: dt.date, sessions: set[int]) -> bool:
    """A NYSE session (a weekday outside the calendar's range counts as one)."""
    if day.weekday() >= 5:
        return False
    label = day.year * 10_000 + day.month * 100 + day.day
    return label in sessions or not (min(sessions) <= label <= max(sessions))


def recent_start_day(days: int, today: dt.date | None = None) -> dt.date:
    """The first of `days` NYSE sessions ending on the last one before `today`.

    Replays stream recent dates, so a replay's history looks like the market's last weeks.
    """
    sessions = _nyse_sessions()
    day = (today or dt.date.today()) - dt.timedelta(days=1)
    found = 0
    while True:
        if _is_session(day, sessions):
            found += 1
            if found == days:
                return day
        day -= dt.timedelta(days=1)


def session_open_ms(day: dt.date) -> int:
    """09:30 New York on `day`, in Unix ms."""
    return int(dt.datetime.combine(day, dt.time(9, 30), NEW_YORK).timestamp() * 1000)


def trading_day_of(start_ms: int) -> dt.date:
    """The New York calendar day a bar start belongs to."""
    return dt.datetime.fromtimestamp(start_ms / 1000, NEW_YORK).date()


def _intraday_shape(f: MarketFamily = DEFAULT_FAMILY) -> np.ndarray:
    """U-shaped activity over the session, mean 1 (busy open, quiet lunch, busy close)."""
    x = np.linspace(0, 1, BARS_PER_DAY)
    shape = (
        0.55
        + f.lunch_depth * (x - 0.5) ** 2
        + f.open_boost * np.exp(-x * 25)
        + f.close_boost * np.exp(-(1 - x) * 30)
    )
    return shape / shape.mean()


def _t_noise(rng: np.random.Generator, size: tuple[int, ...], df: float = _DF) -> np.ndarray:
    """Unit-variance Student-t noise."""
    return rng.standard_t(df, size) / np.sqrt(df / (df - 2))


def simulate(
    symbols: list[str],
    days: int,
    seed: int,
    start_day: dt.date | None = None,
    inject: bool = True,
    family: MarketFamily = DEFAULT_FAMILY,
) -> SimResult:
    """Simulate `days` trading days of minute bars for `symbols`, with labelled anomalies."""
    rng = np.random.default_rng(seed)
    # the family's extra normal behaviour draws from its own stream, so the default family's
    # market is bit for bit the one it always was
    extra = np.random.default_rng([seed, 0xE7])
    days_list = trading_days(start_day or DEFAULT_START_DAY, days)
    shape = _intraday_shape(family)
    vol_shape = np.sqrt(shape)  # volatility follows activity, less steeply
    market_sigma = (
        PROFILES[MARKET_SYMBOL].annual_vol
        * family.vol_scale
        / np.sqrt(_MINUTES_PER_YEAR)
        * vol_shape
    )
    market = _t_noise(rng, (days, BARS_PER_DAY), family.tail_df) * market_sigma
    regime = _vol_regimes(extra, family, days, 1)[0]
    market *= regime
    lo, hi = family.anomalies_per_day
    plans = {
        s: [inj.plan_day(rng, s != MARKET_SYMBOL, lo, hi) if inject else [] for _ in range(days)]
        for s in symbols
    }
    opens = np.array([session_open_ms(d) for d in days_list], dtype=np.int64)
    normal_events: list[NormalEvent] = []
    market_boost = np.zeros((days, BARS_PER_DAY))  # market-wide volume during market moves
    if family.market_event_rate > 0:
        for d in range(days):
            for _ in range(int(extra.poisson(family.market_event_rate))):
                length = int(extra.integers(1, 4))
                k = int(extra.integers(inj.EDGE, BARS_PER_DAY - inj.EDGE - length))
                size = extra.uniform(*family.market_event_sigmas) * (
                    1 if extra.random() < 0.5 else -1
                )
                market[d, k : k + length] += size * market_sigma[k : k + length] / np.sqrt(length)
                market_boost[d, k : k + length] += np.log(extra.uniform(2, 5))
                normal_events.append(
                    NormalEvent(
                        "*",
                        int(opens[d]) + k * MINUTE_MS,
                        int(opens[d]) + (k + length - 1) * MINUTE_MS,
                        "market_move",
                    )
                )
    drifts: dict[tuple[str, int], np.ndarray] = {}
    for s in symbols:
        for d, plan in enumerate(plans[s]):
            for i in plan:
                if i.kind == "decoupling":
                    drifts[(s, d)] = inj.market_drift(rng, i, market_sigma)
                    market[d] += drifts[(s, d)]
    bars: list[MinuteBar] = []
    labels: list[AnomalyLabel] = []
    for s in symbols:
        sym_bars, sym_labels, sym_normal = _simulate_symbol(
            rng, extra, family, s, market, plans[s], drifts, opens, shape, market_boost
        )
        bars += sym_bars
        labels += sym_labels
        normal_events += sym_normal
    bars.sort(key=lambda b: (b.start_ms, b.symbol))
    labels.sort(key=lambda lb: (lb.start_ms, lb.symbol))
    normal_events.sort(key=lambda e: (e.start_ms, e.symbol))
    return SimResult(bars, labels, days_list, normal_events)


def _vol_regimes(rng: np.random.Generator, f: MarketFamily, days: int, count: int) -> np.ndarray:
    """(count, days, bars) volatility multipliers: day-to-day regimes and mid-session shifts."""
    out = np.ones((count, days, BARS_PER_DAY))
    if f.day_vol_sigma > 0:
        out *= np.exp(rng.normal(0, f.day_vol_sigma, (count, days, 1)))
    if f.regime_switch_prob > 0:
        for c in range(count):
            for d in np.flatnonzero(rng.random(days) < f.regime_switch_prob):
                at = int(rng.integers(60, BARS_PER_DAY - 60))
                out[c, d, at:] *= np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    return out


def _simulate_symbol(
    rng: np.random.Generator,
    extra: np.random.Generator,
    f: MarketFamily,
    symbol: str,
    market: np.ndarray,
    plans: list[list[inj.Injection]],
    drifts: dict,
    opens: np.ndarray,
    shape: np.ndarray,
    market_boost: np.ndarray,
) -> tuple[list[MinuteBar], list[AnomalyLabel], list[NormalEvent]]:
    """One symbol's bars over all days, anomalies applied."""
    p = profile_for(symbol)
    days = market.shape[0]
    vol_shape = np.sqrt(shape)
    sigma = p.annual_vol * f.vol_scale / np.sqrt(_MINUTES_PER_YEAR) * vol_shape
    if symbol == MARKET_SYMBOL:
        idio_sigma = sigma * 0.15
        beta = 1.0
    else:
        market_sigma = (
            PROFILES[MARKET_SYMBOL].annual_vol
            * f.vol_scale
            / np.sqrt(_MINUTES_PER_YEAR)
            * vol_shape
        )
        idio_sigma = np.sqrt(
            np.maximum(sigma**2 - (p.beta * market_sigma) ** 2, (0.3 * sigma) ** 2)
        )
        beta = p.beta
    noise = _t_noise(rng, market.shape, f.tail_df) * idio_sigma
    if f != DEFAULT_FAMILY:
        noise *= _vol_regimes(extra, f, days, 1)[0]
    returns = beta * market + noise
    volume = (
        p.daily_volume
        / BARS_PER_DAY
        * shape
        * np.exp(
            rng.normal(-(f.volume_noise**2) / 2, f.volume_noise, market.shape)
            + f.volume_return_coupling * np.abs(returns / sigma)
            + market_boost
        )
    )
    range_scale = np.ones(market.shape)
    stale = np.zeros(market.shape, dtype=bool)
    labels = []
    normal: list[NormalEvent] = []
    prints = np.zeros(market.shape)  # block-print volume added to a bar (one trade)
    if f.block_print_rate > 0:
        for d in range(days):
            for _ in range(int(extra.poisson(f.block_print_rate))):
                k = int(extra.integers(1, BARS_PER_DAY))
                prints[d, k] = volume[d, k] * extra.uniform(*f.block_print_size)
                t = int(opens[d]) + k * MINUTE_MS
                normal.append(NormalEvent(symbol, t, t, "block_print"))
    for d in range(days):
        day = inj.DayPaths(returns[d], volume[d], range_scale[d], stale[d])
        for i in plans[d]:
            inj.apply(rng, i, day, sigma, beta, drifts.get((symbol, d)), f.anomaly_scale)
            labels.append(
                AnomalyLabel(
                    symbol=symbol,
                    start_ms=int(opens[d]) + i.start * MINUTE_MS,
                    end_ms=int(opens[d]) + i.end * MINUTE_MS,
                    kind=i.kind,
                )
            )
    overnight = rng.normal(0, p.annual_vol * f.vol_scale / np.sqrt(252) * 0.4, days)
    overnight[0] = 0.0
    log_close = np.log(p.price) + np.cumsum((returns + _day_start(overnight)).ravel())
    close = np.exp(log_close)
    open_ = np.exp(
        np.concatenate([[np.log(p.price)], log_close[:-1]]) + _day_start(overnight).ravel()
    )
    spread = (
        np.abs(rng.standard_normal((2, close.size))) * 0.6 * (sigma[None, :] * range_scale).ravel()
    )
    high = np.maximum(open_, close) * np.exp(spread[0])
    low = np.minimum(open_, close) * np.exp(-spread[1])
    return (
        _to_bars(
            symbol,
            opens,
            open_,
            high,
            low,
            close,
            np.round(volume.ravel()),
            stale.ravel(),
            p.trade_size,
            np.round(prints.ravel()),
        ),
        labels,
        normal,
    )


def _day_start(overnight: np.ndarray) -> np.ndarray:
    """Overnight gaps placed on the first bar of each day."""
    out = np.zeros((overnight.size, BARS_PER_DAY))
    out[:, 0] = overnight
    return out


def _to_bars(
    symbol: str,
    opens: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    stale: np.ndarray,
    trade_size: float,
    prints: np.ndarray,
) -> list[MinuteBar]:
    """Rounded, validated MinuteBar records; `prints` is block volume traded in one trade."""
    o, h, lo, c = (np.round(x, 2) for x in (o, h, lo, c))
    for i in np.flatnonzero(stale):  # stale: the price does not move at all
        prev = c[i - 1] if i else o[i]
        o[i] = h[i] = lo[i] = c[i] = prev
    vwap = np.round(np.clip((o + h + lo + 2 * c) / 5, lo, h), 4)
    tx = np.where(v > 0, np.maximum(1, np.round(v / trade_size)), 0).astype(np.int64)
    tx = tx + (prints > 0)
    v = v + prints
    starts = (opens[:, None] + np.arange(BARS_PER_DAY, dtype=np.int64) * MINUTE_MS).ravel()
    return _minute_bars([symbol] * len(starts), starts, o, h, lo, c, v, vwap, tx)


def _minute_bars(
    symbols: Sequence[str], starts: Sequence[int] | np.ndarray, *columns: np.ndarray
) -> list[MinuteBar]:
    """Validated replay bars from parallel columns: open, high, low, close, volume, vwap,
    transactions."""
    return [
        MinuteBar(
            symbol=sym,
            start_ms=int(s),
            end_ms=int(s) + MINUTE_MS,
            open=float(oo),
            high=float(hh),
            low=float(ll),
            close=float(cc),
            volume=float(vv),
            vwap=float(ww),
            transactions=int(tt),
            source="replay",
        )
        for sym, s, oo, hh, ll, cc, vv, ww, tt in zip(symbols, starts, *columns, strict=True)
    ]


def trades_for(bar: MinuteBar) -> list[Trade]:
    """The bar's trades, deterministic per bar: `transactions` trades summing to its volume.

    The first trade is at the open, the last at the close, and the high and low are both traded.
    """
    n = min(bar.transactions, int(bar.volume))
    if n <= 0:
        return []
    rng = np.random.default_rng(zlib.crc32(f"{bar.symbol}|{bar.start_ms}".encode()))
    times = np.sort(rng.integers(bar.start_ms, bar.start_ms + MINUTE_MS, n))
    walk = np.cumsum(rng.standard_normal(n))
    bridge = walk - np.linspace(0, 1, n) * walk[-1] if n > 1 else np.zeros(1)
    span = np.ptp(bridge) or 1.0
    prices = (
        bar.open
        + (bar.close - bar.open) * np.linspace(0, 1, n)
        + bridge / span * (bar.high - bar.low) / 2
    )
    prices = np.clip(prices, bar.low, bar.high)
    if n >= 4:
        mid = rng.choice(np.arange(1, n - 1), 2, replace=False)
        prices[mid[0]], prices[mid[1]] = bar.high, bar.low
    prices[0], prices[-1] = bar.open, bar.close
    sizes = rng.multinomial(int(bar.volume) - n, np.full(n, 1 / n)) + 1
    tape = 2 if bar.symbol == MARKET_SYMBOL else 3
    exchanges = rng.choice([4, 8, 10, 11, 12, 15, 19, 21], n)
    return [
        Trade(
            symbol=bar.symbol,
            price=round(float(p), 4),
            size=float(sz),
            timestamp_ms=int(t),
            exchange=int(x),
            trade_id=f"{bar.start_ms // 1000 % 10**7}{i:05d}",
            tape=tape,
            sequence=i,
        )
        for i, (p, sz, t, x) in enumerate(zip(prices, sizes, times, exchanges, strict=True))
    ]


# US listings' ticker lengths, roughly: mostly three and four letters
_TICKER_LENGTHS = ((1, 0.005), (2, 0.045), (3, 0.35), (4, 0.55), (5, 0.05))


def ticker_names(count: int, seed: int) -> list[str]:
    """`count` distinct ticker-like symbols, the same for the same seed: the market proxy and
    the other known profiles first (VOO, AAPL, ...), then 1-5 capital letters in about the
    length mix of US listings."""
    known = [MARKET_SYMBOL, *(s for s in PROFILES if s != MARKET_SYMBOL)]
    names = known[:count]
    seen = set(names)
    rng = np.random.default_rng([seed, 0x71C])
    lengths, weights = zip(*_TICKER_LENGTHS, strict=True)
    letters = list(string.ascii_uppercase)
    while len(names) < count:
        name = "".join(rng.choice(letters, int(rng.choice(lengths, p=weights))))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


class WholeMarket:
    """A whole market's minute bars, one minute at a time: what the replay server streams with
    `replay.market_symbols` set (the whole-market end-to-end benchmark).

    `count` ticker-like symbols (`ticker_names`), each with its profile (`profile_for`): the
    market proxy's Student-t moves times the symbol's beta plus its own, the intraday U of
    volume and volatility, volume rising with the size of the move; from the open of
    `start_day`, `days` NYSE sessions of 390 minutes. No anomalies are injected and there are no
    overnight gaps. Vectorised over the symbols (a 10,000-symbol minute in milliseconds,
    nothing held beyond the last close); the same seed gives the same minutes.
    """

    def __init__(
        self,
        count: int,
        seed: int,
        start_day: dt.date,
        days: int = 1,
        family: MarketFamily = DEFAULT_FAMILY,
    ) -> None:
        self.symbols = ticker_names(count, seed)
        self.opens = [session_open_ms(d) for d in trading_days(start_day, days)]
        self.minutes = len(self.opens) * BARS_PER_DAY
        self.family = family
        self.shape = _intraday_shape(family)
        profiles = [profile_for(s) for s in self.symbols]
        per_minute = family.vol_scale / np.sqrt(_MINUTES_PER_YEAR)
        self.market_sigma = PROFILES[MARKET_SYMBOL].annual_vol * per_minute
        self.sigma = np.array([p.annual_vol for p in profiles]) * per_minute
        is_market = np.array([s == MARKET_SYMBOL for s in self.symbols])
        self.beta = np.where(is_market, 1.0, [p.beta for p in profiles])
        self.idio = np.where(
            is_market,
            0.15 * self.sigma,
            np.sqrt(
                np.maximum(
                    self.sigma**2 - (self.beta * self.market_sigma) ** 2, (0.3 * self.sigma) ** 2
                )
            ),
        )
        self.volume = np.array([p.daily_volume for p in profiles]) / BARS_PER_DAY
        self.trade_size = np.array([p.trade_size for p in profiles])
        self.close = np.round(np.array([p.price for p in profiles]), 2)
        self.rng = np.random.default_rng([seed, 0xA11])
        self.done = 0  # minutes generated so far

    def next_minute(self) -> list[MinuteBar]:
        """Every symbol's bar of the next minute (IndexError after the last one)."""
        if self.done >= self.minutes:
            raise IndexError("no minute left")
        day, k = divmod(self.done, BARS_PER_DAY)
        start = self.opens[day] + k * MINUTE_MS
        self.done += 1
        f, n, rng = self.family, len(self.symbols), self.rng
        vol_shape = np.sqrt(self.shape[k])
        market = float(_t_noise(rng, (1,), f.tail_df)[0]) * self.market_sigma * vol_shape
        returns = self.beta * market + _t_noise(rng, (n,), f.tail_df) * self.idio * vol_shape
        sigma = self.sigma * vol_shape
        volume = np.round(
            self.volume
            * self.shape[k]
            * np.exp(
                rng.normal(-(f.volume_noise**2) / 2, f.volume_noise, n)
                + f.volume_return_coupling * np.abs(returns / sigma)
            )
        )
        o = self.close
        c = np.round(o * np.exp(returns), 2)
        spread = np.abs(rng.standard_normal((2, n))) * 0.6 * sigma
        h = np.round(np.maximum(o, c) * np.exp(spread[0]), 2)
        lo = np.round(np.minimum(o, c) * np.exp(-spread[1]), 2)
        vwap = np.round(np.clip((o + h + lo + 2 * c) / 5, lo, h), 4)
        tx = np.maximum(1, np.round(volume / self.trade_size)).astype(np.int64)
        self.close = c
        return _minute_bars(self.symbols, [start] * n, o, h, lo, c, volume, vwap, tx)
