"""The anomaly kinds tickwatch detects, and labelled anomalies injected into a copy of real bars.

The simulator (producers.market_sim) injects these kinds into its return paths; training injects
them into a copy of the user's own validation days (`inject_bars`) to measure recall per kind
where no label exists. Sizes are in units of each symbol's own robust per-bar volatility and
its own volume, so an injected anomaly is as unusual in a calm market as in a wild one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwatch.features import Bar, session_slot

KINDS = (
    "volume_spike",
    "price_jump",
    "flash_crash",
    "volatility_burst",
    "stale_price",
    "decoupling",
)
LENGTH = {  # bars each kind lasts (inclusive range)
    "volume_spike": (1, 3),
    "price_jump": (1, 1),
    "flash_crash": (4, 5),
    "volatility_burst": (6, 10),
    "stale_price": (10, 12),
    "decoupling": (15, 15),
}
EDGE = 5  # no anomaly in a session's first or last bars (the open and close are busy anyway)
GAP = 10  # bars kept clear between two anomalies of a symbol


@dataclass(frozen=True)
class Injected:
    """One injected anomaly: the symbol and its first and last bar starts."""

    symbol: str
    start_ms: int
    end_ms: int
    kind: str


def inject_bars(
    bars: Sequence[Any],
    seed: int,
    market_symbol: str | None = None,
    per_session: tuple[int, int] = (1, 2),
    scale: float = 1.0,
) -> tuple[list[Bar], list[Injected]]:
    """A copy of `bars` (any objects with the Bar fields) with `per_session` anomalies of random
    kinds in every symbol-session long enough to hold them; returns the bars (sorted by start,
    then symbol) and what was injected. The market proxy gets no decoupling (it is the market),
    nor does a symbol when the proxy is absent. Deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    by_symbol: dict[str, list[Any]] = {}
    for b in sorted(bars, key=lambda b: (b.symbol, int(b.start_ms))):
        by_symbol.setdefault(b.symbol, []).append(b)
    market = by_symbol.get(market_symbol or "")
    market_close = {int(b.start_ms): float(b.close) for b in market} if market else {}
    out: list[Bar] = []
    labels: list[Injected] = []
    for symbol in sorted(by_symbol):
        path = _Path(by_symbol[symbol])
        can_decouple = bool(market_close) and symbol != market_symbol
        for rows in _sessions(path.start):
            for kind, first, last in _plan(rng, len(rows), can_decouple, per_session):
                span = rows[first : last + 1]
                path.apply(kind, span, rng, scale, market_close)
                labels.append(
                    Injected(symbol, int(path.start[span[0]]), int(path.start[span[-1]]), kind)
                )
        out += path.bars(symbol)
    out.sort(key=lambda b: (b.start_ms, b.symbol))
    labels.sort(key=lambda lb: (lb.start_ms, lb.symbol))
    return out, labels


def _sessions(start: np.ndarray) -> list[np.ndarray]:
    """Row indexes of each session of one symbol's time-ordered bars."""
    days = np.array([session_slot(int(t))[0] for t in start])
    cuts = np.flatnonzero(days[1:] != days[:-1]) + 1
    return np.split(np.arange(len(start)), cuts)


def _plan(
    rng: np.random.Generator, n: int, can_decouple: bool, per_session: tuple[int, int]
) -> list[tuple[str, int, int]]:
    """Non-overlapping (kind, first, last) positions in a session of `n` bars."""
    kinds = [k for k in KINDS if can_decouple or k != "decoupling"]
    taken = np.zeros(n, dtype=bool)
    out = []
    for _ in range(int(rng.integers(per_session[0], per_session[1] + 1))):
        kind = str(rng.choice(kinds))
        lo, hi = LENGTH[kind]
        length = int(rng.integers(lo, hi + 1))
        if n - 2 * EDGE - length <= 0:
            continue
        for _attempt in range(20):
            first = int(rng.integers(EDGE, n - EDGE - length))
            if not taken[max(0, first - GAP) : first + length + GAP].any():
                taken[first : first + length] = True
                out.append((kind, first, first + length - 1))
                break
    return sorted(out, key=lambda p: p[1])


def _session_gap_ms(start: np.ndarray) -> float:
    """A gap between bars longer than this (five typical intervals) is not within a session."""
    gaps = np.diff(start)
    return 5.0 * float(np.median(gaps)) if len(gaps) else 0.0


class _Path:
    """One symbol's bars as arrays: log-price shifts, volume and range multipliers applied."""

    def __init__(self, bars: list[Any]) -> None:
        self.start = np.array([int(b.start_ms) for b in bars], dtype=np.int64)
        self.o, self.h, self.lo, self.c = (
            np.array([float(getattr(b, f)) for b in bars]) for f in ("open", "high", "low", "close")
        )
        self.v = np.array([float(b.volume) for b in bars])
        self.vw = np.array([float(b.vwap) for b in bars])
        self.tx = np.array([int(b.transactions) for b in bars], dtype=np.int64)
        r = np.diff(np.log(self.c))[np.diff(self.start) <= _session_gap_ms(self.start)]
        moves = np.abs(r[r != 0])
        # the per-bar volatility within sessions (as the simulator sizes its anomalies), at
        # least one price tick
        self.sigma = max(float(np.std(r)), float(moves.min())) if len(moves) else 1e-4
        self.shift = np.zeros(len(bars))  # log-price shift of each bar's close from here on
        self.step = np.zeros(len(bars))  # added to a bar's close return (before the cumulation)
        self.widen = np.ones(len(bars))
        self.stale = np.zeros(len(bars), dtype=bool)

    def apply(
        self,
        kind: str,
        span: np.ndarray,
        rng: np.random.Generator,
        scale: float,
        market_close: dict[int, float],
    ) -> None:
        s, n, k = self.sigma * scale, len(span), span[0]
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kind == "volume_spike":
            self._volume(span, 1 + (rng.uniform(5, 15, n) - 1) * scale)
        elif kind == "price_jump":
            self.step[k] += sign * rng.uniform(10, 14) * s
            self._volume(span, rng.uniform(3, 6, n))
            self.widen[span] = 1.5
        elif kind == "flash_crash":
            drop = rng.uniform(18, 26) * s
            self.step[span[:2]] -= drop / 2
            self.step[span[2:]] += drop * rng.uniform(0.85, 1.0) / (n - 2)
            self._volume(span, rng.uniform(4, 8, n))
            self.widen[span] = 3.0
        elif kind == "volatility_burst":
            self.step[span] += rng.standard_normal(n) * 5.0 * s
            self._volume(span, rng.uniform(1.5, 3, n))
            self.widen[span] = 5.0
        elif kind == "stale_price":
            self.stale[span] = True
        elif kind == "decoupling":
            # against the market's own move over the span (up if the market fell), a steady drift
            first, last = (
                market_close.get(int(self.start[k])),
                market_close.get(int(self.start[span[-1]])),
            )
            direction = -math.copysign(1.0, (last or 1.0) - (first or 1.0)) if first else sign
            self.step[span] += direction * 1.5 * s
            self._volume(span, rng.uniform(1.2, 2.0, n))
        else:
            raise ValueError(f"unknown anomaly kind {kind!r}")

    def _volume(self, span: np.ndarray, factor: np.ndarray) -> None:
        self.v[span] *= factor
        self.tx[span] = np.maximum(1, np.round(self.tx[span] * factor)).astype(np.int64)

    def bars(self, symbol: str) -> list[Bar]:
        shift = np.cumsum(self.step)
        c = self.c * np.exp(shift)
        o = self.o * np.exp(np.r_[0.0, shift[:-1]])
        top = np.maximum(self.o, self.c)
        bottom = np.minimum(self.o, self.c)
        wick_up = np.maximum(self.h / top - 1, 0.3 * self.sigma) * self.widen
        wick_down = np.maximum(1 - self.lo / bottom, 0.3 * self.sigma) * self.widen
        h = np.maximum(o, c) * (1 + np.where(self.widen > 1, wick_up, self.h / top - 1))
        lo = np.minimum(o, c) * (1 - np.where(self.widen > 1, wick_down, 1 - self.lo / bottom))
        vw = np.clip(self.vw * np.exp(shift), lo, h)
        v, tx = self.v.copy(), self.tx.copy()
        for i in np.flatnonzero(self.stale):  # frozen: every price at the last close
            prev = c[i - 1] if i else o[i]
            o[i] = h[i] = lo[i] = c[i] = vw[i] = prev
            v[i], tx[i] = min(v[i], 1.0), min(tx[i], 1)
        return [
            Bar(
                symbol,
                int(t),
                float(op),
                float(hi),
                float(low),
                float(cl),
                float(vo),
                float(vwap),
                int(n),
            )
            for t, op, hi, low, cl, vo, vwap, n in zip(
                self.start, o, h, lo, c, v, vw, tx, strict=True
            )
        ]
