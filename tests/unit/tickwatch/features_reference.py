"""A straightforward pandas computation of tickwatch.features, to check the incremental one against.

Written from the feature definitions (rolling windows, shift(1) for "previous" windows, ddof=1),
not from the incremental code. Shared conventions: a window whose variance is within 1e-12 of its
squared mean counts as constant (std 0); z-scores and ratios are clipped to +-50.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CLIP = 50.0
FLOOR = 1e-5
MAD_NORMAL = 0.6745  # median |x| of a standard normal


def bars_frame(bars: list, market_symbol: str) -> pd.DataFrame:
    """Bars in processing order (start, market first), exact repeats of (symbol, start) dropped."""
    df = pd.DataFrame([b._asdict() if hasattr(b, "_asdict") else dict(b) for b in bars])
    df["order"] = np.arange(len(df))
    df["is_other"] = df["symbol"] != market_symbol
    df = df.sort_values(["start_ms", "is_other", "symbol", "order"], kind="stable")
    df = df.drop_duplicates(["symbol", "start_ms"], keep="first")
    # a bar not after the symbol's last accepted bar is ignored (input is sorted, so none here)
    return df.reset_index(drop=True)


def _std(mean: pd.Series, var: pd.Series) -> pd.Series:
    std = np.sqrt(var.clip(lower=0))
    return std.where(var > 1e-12 * mean * mean, 0.0).fillna(0.0)


def _prev_stats(x: pd.Series, window: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Mean, std (ddof=1), count of the previous `window` values (this one excluded)."""
    roll = x.rolling(window, min_periods=1)
    mean, var, n = roll.mean().shift(1), roll.var(ddof=1).shift(1), roll.count().shift(1)
    return mean.fillna(0.0), _std(mean, var.fillna(0.0)), n.fillna(0).astype(int)


def _z(x: pd.Series, mean: pd.Series, std: pd.Series, n: pd.Series, min_n: int = 2) -> pd.Series:
    z = ((x - mean) / std.where(std > 0)).clip(-CLIP, CLIP)
    return z.where((n >= min_n) & (std > 0), 0.0)


def _last_std(r: pd.Series, window: int) -> pd.Series:
    roll = r.rolling(window, min_periods=1)
    return _std(roll.mean(), roll.var(ddof=1).fillna(0.0))


def symbol_features(
    df: pd.DataFrame,
    market: pd.Series,
    beta_window: int,
    market_volume: pd.Series | None = None,
    market_excess: pd.Series | None = None,
) -> pd.DataFrame:
    """Features of one symbol's bars (sorted, unique starts); `market` maps start -> return,
    `market_volume` and `market_excess` start -> the proxy's volume surprise and volume excess
    (None: these are the proxy's bars)."""
    df = df.reset_index(drop=True)
    first = pd.Series(df.index == 0)
    r = np.log(df["close"] / df["close"].shift(1)).fillna(0.0)
    out = pd.DataFrame({"log_return": r})

    # returns window: every return but the first bar's
    rets = r[~first]
    mean, base_std, base_n = (s.reindex(df.index) for s in _prev_stats(rets, 60))
    base_n, base_std = base_n.fillna(0), base_std.fillna(0.0)
    sigma = base_std.clip(lower=FLOOR)
    has_base = base_n >= 2
    for w in (5, 15, 60):
        out[f"volatility_{w}"] = _last_std(rets, w).reindex(df.index).fillna(0.0)
    out["return_z"] = (r / sigma).clip(-CLIP, CLIP).where(has_base, 0.0)
    out["vol_ratio_5"] = (out["volatility_5"] / sigma).clip(-CLIP, CLIP).where(has_base, 1.0)
    out["vol_ratio_15"] = (out["volatility_15"] / sigma).clip(-CLIP, CLIP).where(has_base, 1.0)

    lv = np.log1p(df["volume"])
    out["volume_z_20"] = _z(lv, *_prev_stats(lv, 20))
    minute = pd.to_datetime(df["start_ms"], unit="ms", utc=True).dt.tz_convert("America/New_York")
    mod = minute.dt.hour * 60 + minute.dt.minute
    tod = pd.Series(0.0, index=df.index)
    tod_mean = pd.Series(0.0, index=df.index)
    for _, idx in lv.groupby(mod).groups.items():
        part = lv.loc[idx]
        stats = _prev_stats(part, 20)
        tod.loc[idx] = _z(part, *stats, min_n=3)
        tod_mean.loc[idx] = stats[0]
    out["volume_z_tod"] = tod
    # the volume surprise in log units: over the previous 20 bars' mean, averaged with the
    # excess over the same minute's mean on earlier days where the time-of-day z is read
    mean20, _, n20 = _prev_stats(lv, 20)
    over20 = lv - mean20
    excess = (0.5 * (lv - tod_mean + over20)).where(tod != 0.0, over20)
    out["volume_excess"] = excess.where(n20 >= 2, 0.0)
    lx = np.log1p(df["transactions"].astype(float))
    out["transactions_z_20"] = _z(lx, *_prev_stats(lx, 20))

    dev = (df["close"] - df["vwap"]) / df["vwap"]
    out["vwap_deviation_z"] = (dev / sigma).clip(-CLIP, CLIP).where(has_base, 0.0)
    rng = (df["high"] - df["low"]) / df["close"]
    rng_mean = rng.rolling(20, min_periods=1).mean().shift(1).fillna(0.0)
    out["range_ratio"] = (
        (rng / rng_mean.where(rng_mean > 0)).clip(-CLIP, CLIP).where(rng_mean > 0, 1.0)
    )
    out["bar_range"] = rng

    m = df["start_ms"].map(market)
    paired = ~first & m.notna()
    pr, pm = r[paired], m[paired]
    roll_n = pm.rolling(beta_window, min_periods=1).count()
    m_mean = pm.rolling(beta_window, min_periods=1).mean()
    r_mean = pr.rolling(beta_window, min_periods=1).mean()
    sxx = (pm * pm).rolling(beta_window, min_periods=1).sum() - roll_n * m_mean * m_mean
    sxy = (pr * pm).rolling(beta_window, min_periods=1).sum() - roll_n * r_mean * m_mean
    beta_after = (sxy / sxx).clip(-5, 5).where((roll_n >= 10) & (sxx > 1e-18), 1.0)
    beta = beta_after.reindex(df.index).ffill().shift(1).fillna(1.0)
    out["beta"] = beta
    residual = (r - beta * m).where(paired, 0.0)
    out["relative_return"] = residual
    res = residual[paired]
    res_mean, res_std, res_n = (
        s.reindex(df.index).ffill().shift(1) for s in _prev_stats_after(res, 60)
    )
    res_n = res_n.fillna(0)
    res_sigma = res_std.fillna(0.0).clip(lower=FLOOR)
    out["relative_return_z"] = (residual / res_sigma).clip(-CLIP, CLIP).where(res_n >= 2, 0.0)
    run_sum = res.rolling(14, min_periods=1).sum().reindex(df.index).ffill().shift(1).fillna(0.0)
    run_len = np.minimum(res_n, 14) + 1
    cum = (run_sum + residual) / (res_sigma * np.sqrt(run_len))
    out["relative_cum_z_15"] = cum.clip(-CLIP, CLIP).where(res_n >= 2, 0.0)

    m_mean_prev, m_std_prev, m_n_prev = (
        s.reindex(df.index).ffill().shift(1) for s in _prev_stats_after(pm, beta_window)
    )
    m_sigma = m_std_prev.fillna(0.0).clip(lower=FLOOR)
    out["market_return_z"] = (
        (m / m_sigma).clip(-CLIP, CLIP).where(paired & (m_n_prev.fillna(0) >= 2), 0.0)
    )
    out["market_known"] = m.notna().astype(float)
    # the proxy's own reading: its 20-bar volume z against the median and median deviation
    roll = lv.rolling(20, min_periods=1)
    med = roll.median().shift(1)
    mad = roll.apply(lambda w: np.median(np.abs(w - np.median(w))), raw=True).shift(1)
    n20 = roll.count().shift(1).fillna(0)
    robust = ((lv - med) * MAD_NORMAL / mad.where(mad > 1e-12)).clip(-CLIP, CLIP)
    robust = robust.where(mad > 1e-12, out["volume_z_20"]).where(n20 >= 2, 0.0)
    own = (0.5 * (out["volume_z_tod"] + robust)).where(out["volume_z_tod"] != 0.0, robust)
    mv = own if market_volume is None else df["start_ms"].map(market_volume)
    out["market_volume_z"] = mv.where(m.notna(), 0.0).fillna(0.0)
    mx = out["volume_excess"] if market_excess is None else df["start_ms"].map(market_excess)
    out["market_volume_excess"] = mx.where(m.notna(), 0.0).fillna(0.0)

    day = minute.dt.date
    gap = df["start_ms"].diff() / 60_000
    opening = first | (day != day.shift(1))
    out["minutes_since_last_bar"] = gap.where(~opening, 1.0)
    out["session_open"] = opening.astype(float)
    same = (df["close"] == df["close"].shift(1)) & ~first
    run = same.groupby((~same).cumsum()).cumsum()
    out["unchanged_close_run"] = run.clip(upper=60).astype(float)
    out["warm"] = pd.Series(np.arange(1, len(df) + 1) >= 61)
    out["symbol"], out["start_ms"] = df["symbol"], df["start_ms"]
    return out


def _prev_stats_after(x: pd.Series, window: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Mean, std, count of the last `window` values up to and including each one."""
    roll = x.rolling(window, min_periods=1)
    mean = roll.mean()
    return mean, _std(mean, roll.var(ddof=1).fillna(0.0)), roll.count()


def reference_features(
    bars: list, market_symbol: str = "VOO", beta_window: int = 60
) -> dict[tuple[str, int], dict[str, float]]:
    """(symbol, start) -> features (+ "warm") for every accepted bar."""
    df = bars_frame(bars, market_symbol)
    mk = df[df["symbol"] == market_symbol]
    market = pd.Series(
        np.log(mk["close"] / mk["close"].shift(1)).fillna(0.0).values, index=mk["start_ms"].values
    )
    out: dict[tuple[str, int], dict[str, float]] = {}
    proxy = symbol_features(mk, market, beta_window) if len(mk) else None
    volume, excess = (
        (
            pd.Series(proxy[column].values, index=proxy["start_ms"].values)
            if proxy is not None
            else pd.Series(dtype=float)
        )
        for column in ("market_volume_z", "volume_excess")
    )
    for symbol, part in df.groupby("symbol"):
        if symbol == market_symbol:
            feats = proxy
        else:
            feats = symbol_features(part, market, beta_window, volume, excess)
        for row in feats.to_dict("records"):
            key = (row.pop("symbol"), int(row.pop("start_ms")))
            out[key] = row
    return out
