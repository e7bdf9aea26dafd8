"""Evidence of each anomaly kind, calibrated against the user's own normal market, and the budget.

Every bar gets a handful of evidence channels, each built so that normal market behaviour stays
low on it:
- `move_1`, `move_2`, `move_5`: the price move over 1, 2 and 5 bars in units of recent volatility.
  For a stock linked to the market proxy it is the smaller of the raw move and the move left after
  beta times the market's: a market-wide move (stock follows its beta) and a move of the proxy
  alone (stock stays put) are both normal for the stock.
- `burst`: the median size of the last 5 moves, in units of a robust scale of the window's
  earlier moves (same market logic; at least half the 60-bar standard deviation, so a price
  that sat pinned at one level does not shrink the units to a tick), against how much their
  ranges widened: both must be high, and a single fat-tailed bar among the five moves neither.
- `volume`: the smaller of the volume z-score (same minute on earlier days, else the last 20
  bars) and the trade-count z-score: a block print (one big trade) lifts volume, not the count.
  The volume a market-wide move brings (the market's return z over the last bars) is normal, and
  so is the share of the stock's volume excess (log units) that the market proxy's own excess
  in the same minute accounts for (a market-wide surge lifts every stock's log volume by about
  as much as the proxy's; z-scores of that same rise differ by each window's estimated
  deviation, so they are compared in log units); the larger of the two explains it, as both
  read the same market-wide volume. So does the bar's own move (OWN_VOLUME per return z beyond
  OWN_VOLUME_FROM: that volume is the move's evidence, read by the move channels); the largest
  of the three explanations is taken off.
- `volume_2`: the last two bars' `volume` evidence together (their sum over sqrt(2)): a surge of
  a few bars, each under the one-bar threshold, is rarer as a pair; a block print is one bar.
- `stale`: how many bars in a row closed exactly unchanged.
- `decouple`: the cumulative market residual over 10, 15 and 30 bars, each bar capped at 2.5
  robust units of the bars before the last 15 (one fat-tailed bar is not a trend, and the
  event's own bars do not shrink the units), capped at twice the stock's own cumulative
  move (a stock moving against the market, not the proxy moving alone).
- `against_market`: the stock's cumulative move against a strong market trend (the market's
  bars capped like the stock's: one market-wide shock is no trend). Both decoupling
  channels take the residual with the beta from before the last 15 bars: a decoupling stock
  drags its rolling beta towards zero and would hide its own residual.

Fitted on the user's history (`fit_detector`): each channel's intraday seasonality (per
half-hour of the exchange day: the open and close are busier; the volume channels are only
damped, their z-scores already read the time of day) and its normal tail, which turns a
value into a surprise `-log10 P(normal >= value)`. The models (Isolation Forest, LSTM
autoencoder) are calibrated the same way. The bar's score is the largest channel surprise, or
the models' where both agree (`combine`).

The alert budget (`model.alerts_per_day`, per symbol per trading day) sets the threshold: on the
fit history the rate of alert events (after the cooldown) above a level T falls about tenfold per
unit of T; the line fitted where normal behaviour dominates (several times the budget) is
extrapolated to the budget, so a few real anomalies in the history do not move it. Online, each
symbol keeps the same event counts over its trailing `model.threshold_sessions` sessions
(`OnlineThreshold`) and re-solves its threshold at every new session, so a calmer or wilder
regime neither floods nor silences it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tickwatch.features import MAD_NORMAL
from tickwatch.schemas import MINUTE_MS

INPUTS: tuple[str, ...] = (
    "return_z",
    "relative_return_z",
    "range_ratio",
    "volume_z_20",
    "volume_z_tod",
    "transactions_z_20",
    "unchanged_close_run",
    "minutes_since_last_bar",
    "relative_cum_z_15",
    "market_known",
    "session_open",
    "market_return_z",
    "log_return",
    "relative_return",
    "beta",
    "volume_excess",
    "market_volume_excess",
    "bar_range",
)
CHANNELS: tuple[str, ...] = (
    "move_1",
    "move_2",
    "move_5",
    "burst",
    "volume",
    "volume_2",
    "stale",
    "decouple",
    "against_market",
)
MARKET_VOLUME = 2.0  # volume z explained by each market-return z beyond MARKET_VOLUME_FROM
MARKET_VOLUME_FROM = 1.5  # market-return z (largest of the last MARKET_VOLUME_BARS) it starts at
MARKET_VOLUME_BARS = 3  # market-wide moves and their volume span a few bars
OWN_VOLUME = 1.0  # volume z explained by each unit of the bar's own return z beyond OWN_VOLUME_FROM
OWN_VOLUME_FROM = 1.5  # the bar's own return z where its move starts to explain its volume
WINDOW = 30  # bars of each symbol's history the channels read (this one included)
RECENT = 5  # the window's newest bars a burst is read from; the bars before are its reference
HUBER = 2.5  # robust units one bar may add to a decoupling sum
DECOUPLE_BARS = (10, 15, 30)  # cumulative residual spans
TREND_BARS = 15  # bars of a decoupling the residual beta is taken before
BETA_MIN = 0.05  # below it the market return cannot be read back from the residual
# the burst's units are at least this share of the 60-bar standard deviation (see channel_values)
SIGMA_60_SHARE = 0.5
RETURN_SCALE_FLOOR = 1e-6  # robust scale floor (log-return units) for a window of frozen prices
BUCKET_MINUTES = 30  # intraday seasonality resolution
# channels whose inputs are already against the same minute on earlier days (volume_z_tod):
# the seasonality damps their busy buckets but does not amplify their quiet ones (a bucket
# where volume usually falls against the last 20 bars, after the open, would turn an ordinary
# rise into a surprise)
SEASON_DAMPEN_ONLY: tuple[str, ...] = ("volume", "volume_2")
TAIL_LEVELS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)  # knots of the empirical normal tail
GRID = np.round(np.arange(1.0, 12.01, 0.1), 2)  # threshold levels whose event rates are counted
TAIL_FLOOR = 0.5  # narrowest tail step, in channel units (sigmas, z, bars): discrete columns
TAIL_SPAN_SHARE = 0.25  # ... and at least this share of the channel's median-to-q99 span
# channels of z-scores of log volume, whose normal tail is close to a normal distribution's (log
# volume is about normal around its expected level): their tail goes on at the slope of their own
# q98-q99 step, at most a normal's (0.28 sigma from q98 to q99). The floors above read such a
# tail about half as steep as it is (a volume spike of five sigmas scored as a move of three).
NORMAL_TAIL_CHANNELS: tuple[str, ...] = ("volume", "volume_2")
NORMAL_TAIL_STEP = 0.25
FIT_BAND = (2.0, 20.0)  # rates (budget multiples) where the log-rate line is fitted
CAP_SPAN = 2.0  # levels above a threshold whose events the budget's cap leaves out
MAX_BAR_SHARE = 0.005  # alerts never budgeted on more than this share of bars (daily bars: 0.5%)
PRIOR_EVENTS = 5.0  # the fitted pooled rates weigh as the sessions that expect this many alerts
WINDOW_EVENTS = 20.0  # a symbol's trailing window holds at least the sessions expecting these
ESCALATION = 1.0  # log10 units: each alert event past a session's budget must be 10x rarer
ANY_KIND_SHARE = 3  # budgets a session's alerts of every kind together have before escalating
NEVER_MS = -(2**62)  # the time of a flag or level crossing that never happened
# the kinds of evidence a session's budget is kept for: each channel's kind, then the models
EVIDENCE_KINDS: tuple[str, ...] = ("move", "burst", "volume", "stale", "decoupling", "models")
_KIND_OF_CHANNEL = {
    "move_1": 0,
    "move_2": 0,
    "move_5": 0,
    "burst": 1,
    "volume": 2,
    "volume_2": 2,
    "stale": 3,
    "decouple": 4,
    "against_market": 4,
}
_I = {name: i for i, name in enumerate(INPUTS)}
_DAMPEN_ONLY = np.array([c in SEASON_DAMPEN_ONLY for c in CHANNELS])


def _robust_scale(x: np.ndarray, quantile: float = 0.75) -> np.ndarray:
    """Per row, a scale of `x` that one fat-tailed value cannot inflate: by default the 75th
    percentile of |x| (1.15 sigma for a normal), floored by a quarter of the mean |x| and by the
    smallest non-zero |x| (one price tick: in a thin market most bars do not move, and a move
    of one tick is the smallest there is, not a surprise)."""
    a = np.abs(x)
    q = np.quantile(a, quantile, axis=1) / (1.15 if quantile == 0.75 else 1.0)
    tick = np.where(a > 0, a, np.inf).min(axis=1)
    tick = np.where(np.isfinite(tick), tick, 0.0)
    return np.maximum.reduce([q, a.mean(axis=1) / 4.0, tick, np.full(len(a), RETURN_SCALE_FLOOR)])


def _sigma_60(w: np.ndarray, value: str, z: str) -> np.ndarray:
    """Per row, the median over the window of the standard deviation a feature's z-score was
    taken against (`value / z`, over the previous 60 bars, on bars where both moved); 0 where
    no bar did."""
    x, zz = np.abs(w[:, :, _I[value]]), np.abs(w[:, :, _I[z]])
    moved = (zz > 1e-9) & (x > 0)
    sig = np.where(moved, x / np.where(moved, zz, 1.0), np.nan)
    out = np.zeros(len(w))
    some = moved.any(axis=1)
    if some.any():
        out[some] = np.nanmedian(sig[some], axis=1)
    return out


def _residuals(w: np.ndarray) -> np.ndarray:
    """Each bar's market residual, `r - beta * m`, with the beta of the bar before the last
    TREND_BARS: a stock decoupling from the market drags its rolling beta towards zero within
    the event, which would hide the residual the event leaves (the feature `relative_return`
    uses the rolling beta). Bars without a known market return have none (0)."""
    r = w[:, :, _I["log_return"]]
    beta = w[:, :, _I["beta"]]
    known = (w[:, :, _I["market_known"]] > 0) & (np.abs(beta) > BETA_MIN)
    m = np.where(known, (r - w[:, :, _I["relative_return"]]) / np.where(known, beta, 1.0), 0.0)
    before = beta[:, -TREND_BARS - 1][:, None]
    return np.where(known, r - before * m, 0.0)


def channel_values(
    windows: np.ndarray, proxy: np.ndarray, skip_open: bool, interval_minutes: float = 1.0
) -> np.ndarray:
    """(n, CHANNELS) evidence from (n, WINDOW, INPUTS) windows, newest bar last.

    `proxy` marks rows of the market proxy itself (its relative features are empty);
    `skip_open` drops each session's first bar from the windows (its return spans the overnight
    gap) where sessions have many bars; daily bars keep it. A move across missing bars (a gap
    of several `interval_minutes`) is scaled down by the square root of the bars it spans.
    """
    w = np.asarray(windows, dtype=np.float64)
    bars = w[:, :, _I["minutes_since_last_bar"]] / interval_minutes
    gap = np.sqrt(np.maximum(bars, 1.0))
    keep = 1.0 - w[:, :, _I["session_open"]] if skip_open else np.ones(w.shape[:2])
    rz = w[:, :, _I["return_z"]] / gap * keep
    rr = w[:, :, _I["relative_return_z"]] / gap * keep
    linked = (w[:, -1, _I["market_known"]] > 0) & ~proxy

    def cum(x: np.ndarray, k: int) -> np.ndarray:
        return np.abs(x[:, -k:].sum(axis=1)) / math.sqrt(k)

    def move(k: int) -> np.ndarray:
        own = cum(rz, k)
        return np.where(linked, np.minimum(own, cum(rr, k)), own)

    # returns in units of a robust scale of the bars before the last RECENT (one fat-tailed bar
    # in the window does not shrink the others, as a standard deviation would)
    ret = w[:, :, _I["log_return"]] / gap * keep
    res = _residuals(w) / gap * keep
    ref = slice(0, WINDOW - RECENT)
    # floored by a share of the features' 60-bar standard deviations (their z-scores carry
    # them): where a price sat pinned at one level (an order wall, a thin hour) the window's
    # robust scale shrinks to a tick, and the first moves off the level would read as hundreds
    # of sigmas; the 60 bars remember the moves before the pin
    r_floor = SIGMA_60_SHARE * _sigma_60(w, "log_return", "return_z")
    e_floor = SIGMA_60_SHARE * _sigma_60(w, "relative_return", "relative_return_z")
    r_units = ret / np.maximum(_robust_scale(ret[:, ref]), r_floor)[:, None]
    e_units = res / np.maximum(_robust_scale(res[:, ref]), e_floor)[:, None]

    # burst: the median size of the last RECENT moves (a single fat-tailed bar is not a burst)
    # and their median range against the window's earlier ranges (their median, at least one
    # tick): both must be high
    med_own = np.median(np.abs(r_units[:, -RECENT:]), axis=1) / MAD_NORMAL
    med_res = np.median(np.abs(e_units[:, -RECENT:]), axis=1) / MAD_NORMAL
    size = np.where(linked, np.minimum(med_own, med_res), med_own)
    ranges = w[:, :, _I["bar_range"]]
    widening = np.median(ranges[:, -RECENT:], axis=1) / _robust_scale(ranges[:, ref], 0.5)
    burst = np.minimum(size, widening)

    def volume_at(j: int) -> np.ndarray:
        """The volume evidence of the window's bar `j` (-1 the newest)."""
        end = w.shape[1] + j + 1  # the bars up to and including j
        vz_tod, vz_20 = w[:, j, _I["volume_z_tod"]], w[:, j, _I["volume_z_20"]]
        vz = np.where(vz_tod != 0.0, 0.5 * (vz_tod + vz_20), vz_20)  # features.volume_surprise
        tz = w[:, j, _I["transactions_z_20"]]
        volume = np.where(tz != 0.0, np.minimum(vz, tz), vz)  # no trade counts: volume alone
        # a market-wide move brings market-wide volume: what the market's move explains is
        # normal, and so is what the market's own volume surge explains
        recent = w[:, end - MARKET_VOLUME_BARS : end, _I["market_return_z"]]
        market_move = np.abs(recent).max(axis=1)
        by_move = MARKET_VOLUME * np.maximum(market_move - MARKET_VOLUME_FROM, 0.0)
        # a surge lifts every stock's log volume about as much as the proxy's: the share of the
        # stock's excess (log units) that the proxy's excess accounts for is normal, that share
        # of its z-score is taken off (the z-scores of one rise are divided by each window's
        # estimated deviation, which 20 bars get right to about 16%: for a rise of 8 sigmas two
        # symbols' z-scores differ by about 1.8 at one standard deviation, their excesses do not)
        own_excess = w[:, j, _I["volume_excess"]]
        share = np.clip(
            w[:, j, _I["market_volume_excess"]] / np.where(own_excess > 0.0, own_excess, 1.0),
            0.0,
            1.0,
        )
        by_surge = np.where(own_excess > 0.0, np.maximum(volume, 0.0) * share, 0.0)
        # the market's move and its volume surge are two readings of the same market-wide
        # volume: the larger explains it, they do not add up
        market = np.where(linked, np.maximum(by_move, by_surge), by_move)
        # a bar's own large move brings volume too (volume and volatility rise together): that
        # volume is the move's evidence, read by the move channels, not a volume anomaly; the
        # market's share of the move is in it, so the larger explanation wins here as well
        by_own = OWN_VOLUME * np.maximum(np.abs(rz[:, j]) - OWN_VOLUME_FROM, 0.0)
        return np.maximum(volume - np.maximum(market, by_own), 0.0)

    volume = volume_at(-1)
    # a surge of several bars: the last two bars' evidence together
    volume_2 = (volume + volume_at(-2)) / math.sqrt(2.0)

    stale = w[:, -1, _I["unchanged_close_run"]]
    # decoupling: the cumulative market residual with each bar capped at HUBER robust units (a
    # single fat-tailed bar cannot make a trend), capped at twice the stock's own cumulative move
    # (a stock moving against the market, not the proxy moving alone). Its units are a robust
    # scale of the bars before the last TREND_BARS: a decoupling spans them, and bars of the
    # event in the reference would shrink the units it is measured in.
    before = slice(0, WINDOW - TREND_BARS)
    e_clip = np.clip(res / _robust_scale(res[:, before])[:, None], -HUBER, HUBER)
    r_clip = np.clip(ret / _robust_scale(ret[:, before])[:, None], -HUBER, HUBER)
    decouple = np.maximum.reduce(
        [np.minimum(cum(e_clip, k), 2.0 * cum(r_clip, k)) for k in DECOUPLE_BARS]
    )
    # moving against a market trend: the market's own cumulative move is large and the stock's
    # goes the other way (a move of the proxy alone leaves the stock where it was)
    res15 = cum(e_clip, 15)
    # the market's trend as the stock's: each bar capped at HUBER (one market-wide shock is no
    # trend, and a stock's earlier drift is not "against" it)
    mz = np.clip(w[:, :, _I["market_return_z"]] * keep, -HUBER, HUBER)
    mkt15 = mz[:, -15:].sum(axis=1) / math.sqrt(15)
    against = -np.sign(mkt15) * r_clip[:, -15:].sum(axis=1) / math.sqrt(15)
    trend = np.minimum(np.minimum(res15, np.abs(mkt15)), 3.0 * np.maximum(against, 0.0))
    decouple = np.where(linked, decouple, 0.0)
    trend = np.where(linked, trend, 0.0)
    return np.column_stack(
        [move(1), move(2), move(5), burst, volume, volume_2, stale, decouple, trend]
    )


def bucket_of(minute_of_day: np.ndarray) -> np.ndarray:
    """Intraday bucket index of each bar's minute of the exchange day."""
    return (np.asarray(minute_of_day) // BUCKET_MINUTES).astype(np.int64)


@dataclass
class Season:
    """Per intraday bucket, each channel's location and spread relative to the whole day."""

    loc: np.ndarray  # (buckets, columns)
    scale: np.ndarray
    loc_all: np.ndarray  # (columns,)
    scale_all: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, buckets: np.ndarray, min_rows: int = 200) -> Season:
        n_b = 24 * 60 // BUCKET_MINUTES
        loc_all, hi_all = np.quantile(x, 0.5, axis=0), np.quantile(x, 0.9, axis=0)
        scale_all = hi_all - loc_all
        loc = np.tile(loc_all, (n_b, 1))
        scale = np.tile(scale_all, (n_b, 1))
        for b in np.unique(buckets):
            rows = x[buckets == b]
            if len(rows) >= min_rows:
                loc[b] = np.quantile(rows, 0.5, axis=0)
                scale[b] = np.quantile(rows, 0.9, axis=0) - loc[b]
        return cls(loc, scale, loc_all, scale_all)

    def apply(self, x: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Values as if every bar were at an average time of day. A column already measured
        against its own time of day (SEASON_DAMPEN_ONLY) is only damped in busy buckets, never
        amplified in quiet ones."""
        floor = np.maximum(np.where(_DAMPEN_ONLY, 1.0, 0.25) * self.scale_all, 1e-9)
        scale = np.maximum(self.scale[buckets], floor)
        out = (x - self.loc[buckets]) / scale * self.scale_all + self.loc_all
        flat = self.scale_all <= 1e-9  # a column with no spread (a stale run): left as it is
        return np.where(flat, x, out)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).tolist() for k in ("loc", "scale", "loc_all", "scale_all")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Season:
        return cls(
            *(np.asarray(d[k], dtype=np.float64) for k in ("loc", "scale", "loc_all", "scale_all"))
        )


@dataclass
class Tail:
    """Per column, the normal distribution's upper tail: value -> -log10 P(normal >= value)."""

    knots: np.ndarray  # (columns, len(TAIL_LEVELS) + 1): the minimum, then the quantiles
    slope: np.ndarray  # (columns,): surprise per unit beyond the last knot

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        floor: float | np.ndarray = TAIL_FLOOR,
        span_share: float | np.ndarray = TAIL_SPAN_SHARE,
    ) -> Tail:
        """`floor`: the narrowest tail step in the columns' units; `span_share`: the step is at
        least this share of the median-to-q99 span too (each a value, or one per column:
        `channel_tail_limits()` for the channels)."""
        x = np.asarray(x, dtype=np.float64)
        qs = np.quantile(x, [1 - p for p in TAIL_LEVELS], axis=0)  # (levels, columns)
        knots = np.vstack([x.min(axis=0), qs]).T
        knots = np.maximum.accumulate(knots, axis=1)
        # beyond the last knot the tail goes on at the slope of the last segment (q98 to q99):
        # the history's own anomalies sit beyond it and must not flatten the tail
        rise = math.log10(TAIL_LEVELS[-2] / TAIL_LEVELS[-1])
        width = knots[:, -1] - knots[:, -2]
        width = np.maximum(width, span_share * (knots[:, -1] - knots[:, 1]))
        slope = rise / np.maximum(width, floor)
        return cls(knots, slope)

    def surprise(self, x: np.ndarray) -> np.ndarray:
        """(n, columns) surprises in log10 units (0 below the median, 2 at the 1% level)."""
        levels = np.array([0.0, *(-math.log10(p) for p in TAIL_LEVELS)])
        levels[0] = levels[1]  # below the median: as ordinary as the median
        out = np.empty(x.shape, dtype=np.float64)
        for j in range(x.shape[1]):
            k = self.knots[j]
            col = x[:, j]
            inner = np.interp(col, _strict(k), levels)
            beyond = levels[-1] + (col - k[-1]) * self.slope[j]
            out[:, j] = np.where(col > k[-1], beyond, inner)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"knots": self.knots.tolist(), "slope": self.slope.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tail:
        return cls(
            np.asarray(d["knots"], dtype=np.float64), np.asarray(d["slope"], dtype=np.float64)
        )


def channel_tail_limits() -> tuple[np.ndarray, np.ndarray]:
    """Each channel's narrowest tail step and span share (see NORMAL_TAIL_CHANNELS)."""
    normal = np.array([c in NORMAL_TAIL_CHANNELS for c in CHANNELS])
    return np.where(normal, NORMAL_TAIL_STEP, TAIL_FLOOR), np.where(normal, 0.0, TAIL_SPAN_SHARE)


def _strict(k: np.ndarray) -> np.ndarray:
    """Knots made strictly increasing (np.interp needs it; ties come from discrete columns)."""
    return k + np.arange(len(k)) * 1e-9


def event_counts(
    scores: np.ndarray, ts: np.ndarray, cooldown_ms: int, last: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Alert events above every GRID level in one symbol's time-ordered scores.

    Returns the per-level counts and the last flagged time per level (to carry on), the same
    cooldown rule as the decision: a flag opens an event unless the previous flag at that level
    is within the cooldown.
    """
    last = np.full(len(GRID), NEVER_MS, dtype=np.int64) if last is None else last.copy()
    counts = np.zeros(len(GRID), dtype=np.int64)
    for s, t in zip(scores.tolist(), ts.tolist(), strict=True):
        flagged = s > GRID
        if not flagged.any():
            continue
        new = flagged & (t - last > cooldown_ms)
        counts += new
        last[flagged] = t
    return counts, last


def solve_threshold(rates: np.ndarray, budget: float) -> float:
    """The level where the event rate per session meets `budget`, from GRID-level rates.

    Two readings, the higher wins. The normal rate: log10(rate) fitted linearly in the level
    where the rate is FIT_BAND times the budget (normal behaviour dominates there) and
    extrapolated to the budget, so the anomalies a history holds do not pull the threshold down.
    The cap: the first level whose measured rate, less the events CAP_SPAN levels higher (the
    history's anomalies), is within the budget, so a market whose tail is heavier than the line
    says still gets no more alerts than it asked for. Without a line (too few levels in the
    band), the first level whose measured rate is within the budget.
    """
    lo, hi = FIT_BAND[0] * budget, FIT_BAND[1] * budget
    band = (rates >= lo) & (rates <= hi)
    if band.sum() >= 3:
        # the least-squares line in closed form (np.polyfit's general machinery costs ten times
        # more, and every symbol re-solves when its session ends)
        x, y = GRID[band], np.log10(rates[band])
        dx = x - x.mean()
        slope = float(dx @ (y - y.mean()) / (dx @ dx))
        intercept = float(y.mean() - slope * x.mean())
        if slope < -0.05:
            t = (math.log10(budget) - intercept) / slope
            above = np.searchsorted(GRID, GRID + CAP_SPAN - 1e-9).clip(max=len(GRID) - 1)
            return max(
                float(np.clip(t, GRID[0], GRID[-1])), _first_within(rates - rates[above], budget)
            )
    return _first_within(rates, budget)


def _first_within(rates: np.ndarray, budget: float) -> float:
    within = np.flatnonzero(rates <= budget)
    return float(GRID[within[0]]) if len(within) else float(GRID[-1])


@dataclass
class OnlineThreshold:
    """One symbol's alert threshold from the event rates of its trailing sessions.

    `prior` is the fitted pooled rate per session at each GRID level, weighted as the sessions
    each symbol was fitted on, at most PRIOR_EVENTS / budget (`prior_weight`), so a new symbol
    starts at the fitted threshold and moves to its own as sessions accumulate. The
    threshold is re-solved when a session ends, never mid-session.

    Within a session the budget holds too, per kind of evidence (`EVIDENCE_KINDS`: the bar's
    strongest member's): once a symbol has raised its budget's worth of alert events of one kind
    (`allowed`), each further event of that kind needs ESCALATION more surprise than the last
    (ten times rarer) until the session ends; past ANY_KIND_SHARE budgets of every kind
    together, every further event does. A market that turns wilder than its trailing sessions
    said (one kind of evidence firing again and again) gets its first alerts, then only what
    stands out from that day's, while an anomaly of another kind still gets through.

    A bar not newer than the last one observed is not counted again, so replaying bars the state
    already holds (a restarted worker rebuilding from before its commit point) changes nothing.
    `rolled` is set when a bar starts a new session: the score worker then persists the state.
    """

    prior: np.ndarray
    budget: float
    sessions: int
    cooldown_ms: int
    prior_weight: float = PRIOR_EVENTS
    threshold: float = 0.0
    day: int = -1
    current: np.ndarray = field(default_factory=lambda: np.zeros(len(GRID), dtype=np.int64))
    last: np.ndarray = field(default_factory=lambda: np.full(len(GRID), NEVER_MS, dtype=np.int64))
    history: deque = field(default_factory=deque)
    last_ms: int = -1  # the newest bar observed
    rolled: bool = False
    total: np.ndarray = field(default_factory=lambda: np.zeros(len(GRID), dtype=np.int64))
    # alert events this session per evidence kind, then of every kind (the thresholds applied)
    used: np.ndarray = field(
        default_factory=lambda: np.zeros(len(EVIDENCE_KINDS) + 1, dtype=np.int64)
    )
    # the last flagged bar, the same way (the cooldown joins flags into events)
    flag_ms: np.ndarray = field(
        default_factory=lambda: np.full(len(EVIDENCE_KINDS) + 1, NEVER_MS, dtype=np.int64)
    )

    def __post_init__(self) -> None:
        if not self.threshold:
            self.threshold = solve_threshold(self.prior, self.budget)

    @property
    def allowed(self) -> int:
        """Alert events a session has before the threshold escalates."""
        return max(1, math.ceil(self.budget - 1e-9))

    @property
    def last_flag_ms(self) -> int | None:
        """The newest bar flagged above the applied threshold (of any kind), None if none."""
        last = int(self.flag_ms[-1])
        return None if last == NEVER_MS else last

    def applied(self, kind: int = 0) -> float:
        """The threshold that applies now to evidence of `kind`: the session's, escalated past
        the budget of that kind and past ANY_KIND_SHARE budgets of every kind."""
        past_kind = max(0, int(self.used[kind]) - self.allowed + 1)
        past_all = max(0, int(self.used[-1]) - ANY_KIND_SHARE * self.allowed + 1)
        return self.threshold + ESCALATION * (past_kind + past_all)

    def observe(self, score: float, bar_start_ms: int, day: int, kind: int = 0) -> float:
        """Count this bar at every level and in the session's alerts; return the threshold
        that applies to it (the bar is flagged when `score` is above it). `kind` is the bar's
        evidence kind (`evidence_kinds`)."""
        if bar_start_ms <= self.last_ms:
            return self.applied(kind)
        self.last_ms = bar_start_ms
        if day != self.day:
            if self.day != -1:
                self.history.append(self.current)
                self.total = self.total + self.current
                while len(self.history) > self.sessions:
                    self.total = self.total - self.history.popleft()
                self.current = np.zeros(len(GRID), dtype=np.int64)
                self.threshold = self._solve()
                self.rolled = True
            self.day = day
            self.used = np.zeros(len(EVIDENCE_KINDS) + 1, dtype=np.int64)
        flagged = score > GRID
        if flagged.any():
            self.current += flagged & (bar_start_ms - self.last > self.cooldown_ms)
            self.last[flagged] = bar_start_ms
        applied = self.applied(kind)
        if score > applied:
            for k in (kind, -1):
                self.used[k] += bar_start_ms - self.flag_ms[k] > self.cooldown_ms
                self.flag_ms[k] = bar_start_ms
        return applied

    def _solve(self) -> float:
        n = len(self.history)  # `total` is their sum, kept as sessions come and go
        w = self.prior_weight
        rates = (self.total + w * self.prior) / (n + w)
        return solve_threshold(rates, self.budget)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "day": self.day,
            "last_ms": self.last_ms,
            "current": self.current.tolist(),
            "last": self.last.tolist(),
            "history": [h.tolist() for h in self.history],
            "used": self.used.tolist(),
            "flag_ms": self.flag_ms.tolist(),
        }

    def load(self, d: dict[str, Any]) -> None:
        self.threshold, self.day = float(d["threshold"]), int(d["day"])
        self.last_ms = int(d.get("last_ms", -1))
        self.current = np.asarray(d["current"], dtype=np.int64)
        self.last = np.asarray(d["last"], dtype=np.int64)
        self.history = deque(np.asarray(h, dtype=np.int64) for h in d["history"])
        n = len(EVIDENCE_KINDS) + 1  # snapshots from before the escalation: nothing used
        self.used = np.asarray(d.get("used", [0] * n), dtype=np.int64)
        self.flag_ms = np.asarray(d.get("flag_ms", [NEVER_MS] * n), dtype=np.int64)
        self.total = (
            np.sum(self.history, axis=0) if self.history else np.zeros(len(GRID), dtype=np.int64)
        )


MEMBERS: tuple[str, ...] = (*CHANNELS, "iforest", "lstm_ae")  # every column of the surprise
DETECTOR_VERSION = 15  # bump when the channels' inputs or meaning change: older fits are refused
SEVERITY_STEPS = (0.5, 1.0, 2.0)  # surprise above the threshold (log10 units): low..critical


@dataclass
class Detector:
    """The fitted calibration of every ensemble member and the budget's starting rates."""

    season: Season
    tail: Tail  # over MEMBERS: the channels, then the forest's and autoencoder's scores
    prior: np.ndarray  # pooled alert events per symbol-session at each GRID level
    budget: float  # alert events per symbol per session
    cooldown_ms: int
    sessions: int  # trailing sessions a symbol's online threshold reads
    skip_open: bool  # sessions have many bars: their first bar carries the overnight gap
    market_symbol: str
    calendar: str = "XNYS"  # the exchange calendar the history's sessions came from
    interval_minutes: float = 1.0  # the bars' interval (1 min, 5 min, 1 h, 1 day, ...)
    prior_weight: float = PRIOR_EVENTS  # sessions the prior counts as (see fit_detector)
    _start: tuple[tuple[bytes, float], float] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def threshold(self) -> float:
        """The fitted pooled threshold (where every symbol starts)."""
        return solve_threshold(self.prior, self.budget)

    def new_threshold(self) -> OnlineThreshold:
        """A new symbol's online threshold, starting at the fitted pooled one (solved once per
        prior: a whole market's symbols first seen together do not each solve it again)."""
        key = (self.prior.tobytes(), self.budget)
        if self._start is None or self._start[0] != key:
            self._start = (key, self.threshold)
        return OnlineThreshold(
            self.prior,
            self.budget,
            self.sessions,
            self.cooldown_ms,
            self.prior_weight,
            threshold=self._start[1],
        )

    def surprises(
        self,
        windows: np.ndarray,
        symbols: np.ndarray,
        minutes: np.ndarray,
        model_scores: np.ndarray,
    ) -> np.ndarray:
        """(n, MEMBERS) surprises: channels from input windows, then the two models' scores
        (NaN where a model has no score: read as ordinary)."""
        proxy = np.asarray(symbols) == self.market_symbol
        raw = channel_values(windows, proxy, self.skip_open, self.interval_minutes)
        ch = self.season.apply(raw, bucket_of(minutes))
        return self.tail.surprise(_members(ch, model_scores))

    def to_dict(self) -> dict[str, Any]:
        return {
            "season": self.season.to_dict(),
            "tail": self.tail.to_dict(),
            "prior": self.prior.tolist(),
            "budget": self.budget,
            "cooldown_ms": self.cooldown_ms,
            "sessions": self.sessions,
            "skip_open": self.skip_open,
            "market_symbol": self.market_symbol,
            "calendar": self.calendar,
            "interval_minutes": self.interval_minutes,
            "prior_weight": self.prior_weight,
            "members": list(MEMBERS),
            "grid": GRID.tolist(),
            "version": DETECTOR_VERSION,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detector:
        if not is_current(d):
            raise ValueError(
                "the registered detector was fitted by another version of the detector "
                f"(v{d.get('version', 1)}, this is v{DETECTOR_VERSION}): retrain it"
            )
        return cls(
            Season.from_dict(d["season"]),
            Tail.from_dict(d["tail"]),
            np.asarray(d["prior"], dtype=np.float64),
            float(d["budget"]),
            int(d["cooldown_ms"]),
            int(d["sessions"]),
            bool(d["skip_open"]),
            str(d["market_symbol"]),
            str(d["calendar"]),
            float(d["interval_minutes"]),
            float(d["prior_weight"]),
        )


def is_current(d: dict[str, Any]) -> bool:
    """True if a stored detector was fitted by this version (channels, levels, inputs)."""
    return (
        d.get("version") == DETECTOR_VERSION
        and list(d.get("members", [])) == list(MEMBERS)
        and list(d.get("grid", [])) == GRID.tolist()
    )


def _members(channels: np.ndarray, model_scores: np.ndarray) -> np.ndarray:
    """The MEMBERS matrix: channels, then model scores (a missing score reads as ordinary)."""
    x = np.column_stack([channels, np.asarray(model_scores, dtype=np.float64)])
    return np.where(np.isfinite(x), x, -1e300)


def evidence_kinds(surprise: np.ndarray) -> np.ndarray:
    """Each row's evidence kind (an index of EVIDENCE_KINDS): the kind of the member `combine`
    takes the score from."""
    n_ch = len(CHANNELS)
    channels = surprise[:, :n_ch]
    kind_of = np.array([_KIND_OF_CHANNEL[c] for c in CHANNELS])
    from_models = surprise[:, n_ch:].min(axis=1) > channels.max(axis=1)
    return np.where(from_models, len(EVIDENCE_KINDS) - 1, kind_of[channels.argmax(axis=1)])


def combine(surprise: np.ndarray) -> np.ndarray:
    """The bar's score from its (n, MEMBERS) surprises: the strongest evidence channel, or the
    two models where they agree (the smaller of their two surprises).

    Each model reads the raw features without the market context the channels carry, so one
    model alone fires on normal market behaviour (a market-wide move, one fat-tailed return);
    the forest and the autoencoder agreeing is evidence of its own.
    """
    n_ch = len(CHANNELS)
    return np.maximum(surprise[:, :n_ch].max(axis=1), surprise[:, n_ch:].min(axis=1))


def bars_per_session(symbols: np.ndarray, days: np.ndarray) -> float:
    """The mean number of bars of a symbol-session."""
    pairs = np.unique(np.column_stack([_codes(symbols), np.asarray(days)]), axis=0)
    return len(symbols) / max(len(pairs), 1)


def many_bars_per_session(symbols: np.ndarray, days: np.ndarray) -> bool:
    """True for intraday bars (their session's first bar carries the overnight gap); False when
    a symbol has about one bar per trading day (daily bars)."""
    return bars_per_session(symbols, days) > 1.5


def severity_index(excess: np.ndarray) -> np.ndarray:
    """0-3 (low..critical) from the surprise above the threshold."""
    return np.searchsorted(SEVERITY_STEPS, excess, side="right")


def fit_detector(
    windows: np.ndarray,
    symbols: np.ndarray,
    ts: np.ndarray,
    days: np.ndarray,
    minutes: np.ndarray,
    model_scores: np.ndarray,
    fit_rows: np.ndarray,
    eligible: np.ndarray,
    *,
    budget: float,
    cooldown_ms: int,
    sessions: int,
    market_symbol: str,
    calendar: str = "XNYS",
) -> Detector:
    """Fit seasonality and tails on `fit_rows` (normal history), then the pooled event rates.

    Rows are sorted by symbol then time. `eligible` rows may alert (warm, not an opening bar);
    the rates count alert events per symbol-session over every eligible row of the history.
    """
    skip_open = many_bars_per_session(symbols, days)
    interval = bar_interval_minutes(symbols, ts)
    # a budget per session is for sessions of many bars: with few (hourly, daily bars) it
    # would allow an alert on most of them, so it is capped at MAX_BAR_SHARE of the bars
    budget = min(budget, MAX_BAR_SHARE * bars_per_session(symbols, days))
    # a rate is measured over the sessions that expect WINDOW_EVENTS alerts at least (20
    # sessions at one alert a day, years of daily bars)
    sessions = max(sessions, math.ceil(WINDOW_EVENTS / budget))
    proxy = np.asarray(symbols) == market_symbol
    raw = channel_values(windows, proxy, skip_open, interval)
    buckets = bucket_of(minutes)
    season = Season.fit(raw[fit_rows], buckets[fit_rows])
    ch = season.apply(raw, buckets)
    scores = np.asarray(model_scores, dtype=np.float64)
    ch_tail = Tail.fit(ch[fit_rows], *channel_tail_limits())
    model_tails = []
    for j in range(scores.shape[1]):
        col = scores[fit_rows, j]
        col = col[np.isfinite(col)]
        model_tails.append(Tail.fit(col[:, None], 1e-4 * max(float(np.ptp(col)), 1e-9)))
    tail = Tail(
        np.vstack([ch_tail.knots, *(t.knots for t in model_tails)]),
        np.concatenate([ch_tail.slope, *(t.slope for t in model_tails)]),
    )
    detector = Detector(
        season,
        tail,
        np.zeros(len(GRID)),
        budget,
        cooldown_ms,
        sessions,
        skip_open,
        market_symbol,
        calendar,
        interval,
    )
    best = np.where(eligible, combine(tail.surprise(_members(ch, scores))), 0.0)
    total, n_sessions = np.zeros(len(GRID)), 0
    codes = _codes(symbols)
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        counts, _ = event_counts(best[rows], np.asarray(ts)[rows], cooldown_ms)
        total += counts
        n_sessions += len(np.unique(np.asarray(days)[rows]))
    detector.prior = total / max(n_sessions, 1)
    # the pooled rates are as good as the sessions each symbol had: one day of history is one
    # session's worth, whatever the number of symbols it was pooled over
    per_symbol = n_sessions / max(len(np.unique(codes)), 1)
    detector.prior_weight = float(min(PRIOR_EVENTS / budget, max(per_symbol, 1.0)))
    return detector


def bar_interval_minutes(symbols: np.ndarray, ts: np.ndarray) -> float:
    """The bars' interval: the commonest gap between a symbol's consecutive bars (1 for minute
    bars, 5, 60, 1440 for daily bars without their weekends)."""
    sym, t = np.asarray(symbols), np.asarray(ts, dtype=np.int64)
    same = sym[1:] == sym[:-1]
    gaps = (t[1:] - t[:-1])[same & (t[1:] > t[:-1])]
    if not len(gaps):
        return 1.0
    values, counts = np.unique(gaps, return_counts=True)
    return float(values[np.argmax(counts)]) / MINUTE_MS


def _codes(symbols: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(symbols), return_inverse=True)[1]
