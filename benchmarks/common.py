"""Shared benchmark plumbing: timing and percentiles. A benchmark writes its section of RESULTS.md
with `ops.results.write_section`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ops.results import MIN_PERCENTILE_SAMPLES


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def tail(values: Sequence[float], q: float = 99) -> tuple[float, str]:
    """The q-th percentile and its name, or below MIN_PERCENTILE_SAMPLES values the maximum
    ("max of n"): what a verdict compares and the text names."""
    if len(values) >= MIN_PERCENTILE_SAMPLES:
        return percentile(values, q), f"p{q:g}"
    return (max(values), f"max of {len(values)}") if values else (float("nan"), "none")


def tail_text(values: Sequence[float], fmt: Callable[[float], str], q: float = 99) -> str:
    """The tail as text: "p99 X", or below MIN_PERCENTILE_SAMPLES values "max X (n=N)"."""
    if not values:
        return "none"
    value, stat = tail(values, q)
    return f"{stat} {fmt(value)}" if stat.startswith("p") else f"max {fmt(value)} (n={len(values)})"


def tail_cell(values: Sequence[float], q: float, fmt: Callable[[float], str]) -> str:
    """A table cell for the q-th percentile: the value, "max X (n=N)" below 100 values, "-" for
    a median (or any q under 90) of too few values or none."""
    if len(values) >= MIN_PERCENTILE_SAMPLES:
        return fmt(percentile(values, q))
    if not values or q < 90:
        return "-"
    return f"max {fmt(max(values))} (n={len(values)})"


class Timer:
    """Context manager measuring wall time in seconds."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
