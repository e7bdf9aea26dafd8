"""benchmarks/RESULTS.md and its summaries (results.json): one section written at a time with the
verdicts its run computed, and README's measured table generated again from them. Written by the
benchmarks and by `tickwatch drill`."""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ops.readme_tables import (
    README,
    RESULTS_JSON,
    read_results,
    update_readme,
    verdict_table,
)

RESULTS = README.parent / "benchmarks" / "RESULTS.md"
MIN_PERCENTILE_SAMPLES = 100  # below it a tail percentile is the max: printed as such, with n
HEADER = (
    "# Benchmark results\n\n"
    "Written by `make bench` (each section by its `benchmarks/bench_*.py`). Every figure stands "
    "beside a raw baseline measured in the same run on the same machine, as a ratio.\n"
)


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
