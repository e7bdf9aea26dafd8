"""Inject labelled anomalies into one symbol-day of simulated minute returns and volumes (the
kinds and their lengths are tickwatch.anomalies', which injects the same into real bars)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tickwatch.anomalies import EDGE, GAP, KINDS
from tickwatch.anomalies import LENGTH as _LENGTH

BARS_PER_DAY = 390
__all__ = ["EDGE", "KINDS", "DayPaths", "Injection", "apply", "market_drift", "plan_day"]


@dataclass(frozen=True)
class Injection:
    """One planned anomaly: bars [start, end] (inclusive, indexes within the day)."""

    kind: str
    start: int
    end: int


@dataclass
class DayPaths:
    """One symbol-day being built: log returns, volumes and per-bar flags, all length 390."""

    returns: np.ndarray
    volume: np.ndarray
    range_scale: np.ndarray  # multiplies the bar's high-low spread
    stale: np.ndarray  # bool: o=h=l=c=previous close


def plan_day(
    rng: np.random.Generator, allow_decoupling: bool, least: int = 1, most: int = 3
) -> list[Injection]:
    """`least`-`most` (inclusive) non-overlapping anomalies for one symbol-day."""
    kinds = [k for k in KINDS if allow_decoupling or k != "decoupling"]
    taken = np.zeros(BARS_PER_DAY, dtype=bool)
    out: list[Injection] = []
    for _ in range(int(rng.integers(least, most + 1))):
        kind = str(rng.choice(kinds))
        lo, hi = _LENGTH[kind]
        length = int(rng.integers(lo, hi + 1))
        for _attempt in range(20):
            start = int(rng.integers(EDGE, BARS_PER_DAY - EDGE - length))
            # keep a margin so two anomalies never touch
            if not taken[max(0, start - GAP) : start + length + GAP].any():
                taken[start : start + length] = True
                out.append(Injection(kind, start, start + length - 1))
                break
    return sorted(out, key=lambda i: i.start)


def market_drift(
    rng: np.random.Generator, injection: Injection, market_sigma: np.ndarray
) -> np.ndarray:
    """The market-wide trend that a decoupling stock moves against (a normal market move)."""
    drift = np.zeros(BARS_PER_DAY)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    sl = slice(injection.start, injection.end + 1)
    drift[sl] = sign * 2.0 * market_sigma[sl]
    return drift


def apply(
    rng: np.random.Generator,
    inj: Injection,
    day: DayPaths,
    sigma: np.ndarray,
    beta: float,
    drift: np.ndarray | None,
    scale: float = 1.0,
) -> None:
    """Apply one anomaly in place; `sigma` is the symbol's per-bar return sigma, `scale`
    multiplies the anomaly's size (its sigma multiples, its volume multiple's excess)."""
    sigma = sigma * scale
    sl = slice(inj.start, inj.end + 1)
    n = inj.end - inj.start + 1
    k = inj.start
    if inj.kind == "volume_spike":
        day.volume[sl] *= 1 + (rng.uniform(5, 15, n) - 1) * scale
    elif inj.kind == "price_jump":
        day.returns[k] += (1 if rng.random() < 0.5 else -1) * rng.uniform(10, 14) * sigma[k]
        day.volume[k] *= rng.uniform(3, 6)
        day.range_scale[k] = 1.5
    elif inj.kind == "flash_crash":
        drop = rng.uniform(18, 26) * sigma[k]
        down, up = 2, n - 2
        day.returns[k : k + down] = -drop / down
        day.returns[k + down : inj.end + 1] = drop * rng.uniform(0.85, 1.0) / up
        day.volume[sl] *= rng.uniform(4, 8, n)
        day.range_scale[sl] = 3.0
    elif inj.kind == "volatility_burst":
        day.returns[sl] += rng.standard_normal(n) * 5.0 * sigma[sl]
        day.volume[sl] *= rng.uniform(1.5, 3, n)
        day.range_scale[sl] = 5.0
    elif inj.kind == "stale_price":
        day.returns[sl] = 0.0
        day.volume[sl] = rng.integers(0, 100, n)
        day.stale[sl] = True
    elif inj.kind == "decoupling":
        assert drift is not None, "decoupling needs the market drift"
        # the market trends one way (already in the stock's beta term); the stock goes the other
        day.returns[sl] -= 2.0 * beta * drift[sl] * scale
        day.volume[sl] *= rng.uniform(1.2, 2.0, n)
    else:
        raise ValueError(f"unknown anomaly kind {inj.kind!r}")
