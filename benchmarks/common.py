"""Shared benchmark plumbing: timing, percentiles, and writing one section of RESULTS.md with the
verdicts its run computed (also kept in results.json, from which README's table is generated)."""

from __future__ import annotations

import json
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tickwatch.readme_tables import (
    README,
    RESULTS_JSON,
    read_results,
    update_readme,
    verdict_table,
)

RESULTS = Path(__file__).parent / "RESULTS.md"
MIN_PERCENTILE_SAMPLES = 100  # below it a tail percentile is the max: printed as such, with n
HEADER = (
    "# Benchmark results\n\n"
    "Written by `make bench` (each section by its `benchmarks/bench_*.py`). Every figure stands "
    "beside a raw baseline measured in the same run on the same machine, as a ratio.\n"
)


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


@dataclass(frozen=True)
class Verdict:
    """One README row: what was measured, the figure, beside what, the goal and whether the
    figures of this run meet it (computed, never typed)."""

    stage: str
    figure: str
    baseline: str
    goal: str
    verdict: str


def met(ok: bool) -> str:
    return "met" if ok else "not met"


class Timer:
    """Context manager measuring wall time in seconds."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def machine_line(date: str) -> str:
    import os

    return (
        f"{date}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""

    def fmt(x: object) -> str:
        return f"{x:,.3f}".rstrip("0").rstrip(".") if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class ResultFiles:
    """Where results go: RESULTS.md, its summaries, and the README generated from them."""

    markdown: Path = RESULTS
    summaries: Path = RESULTS_JSON
    readme: Path = README


def write_section(
    name: str,
    title: str,
    body: str,
    verdicts: Sequence[Verdict] = (),
    command: str = "make bench",
    files: ResultFiles = ResultFiles(),
) -> None:
    """Replace (or append) the section `name` of RESULTS.md, keeping the others; its verdicts go
    under the body and into results.json with the same date, and README's measured table is
    generated again from them."""
    date = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    text = files.markdown.read_text() if files.markdown.exists() else HEADER
    rows = [asdict(v) for v in verdicts]
    if rows:
        body = f"{body.strip()}\n\nVerdicts (`{command}`):\n\n{verdict_table(rows)}"
    block = (
        f"<!-- {name}:start -->\n## {title}\n\n_{machine_line(date)}_\n\n{body.strip()}\n"
        f"<!-- {name}:end -->"
    )
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + block + "\n")
    )
    files.markdown.write_text(text)
    summaries = read_results(files.summaries)
    summaries[name] = {"title": title, "date": date, "command": command, "rows": rows}
    files.summaries.write_text(json.dumps(summaries, indent=2, sort_keys=True) + "\n")
    update_readme(files.readme, files.summaries)
    print(f"\n## {title}\n\n{body.strip()}\n")
