"""The drill's tables: per fault window and overall, printed with rich and recorded in RESULTS.md.

A fault's window runs from the newest bar in Kafka when it hit to the newest bar when the next
one hit; items are attributed to windows by bar start, dead letters by the time they arrived.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ops.drill import Drills
from ops.drill_compare import Diff, dead_letter_kinds, diff, unexplained
from ops.results import Verdict, met, write_section
from ops.results import table as md_table

HEADERS = (
    "window",
    "action s",
    "died (restarted)",
    "bars lost/dup",
    "features lost/dup",
    "anomaly ids lost/dup (topic)",
    "store lost/dup",
    "dead letters",
    "ok",
)


@dataclass
class Row:
    """One line of the table: a fault's window, or the whole run."""

    window: str
    took_s: float | None
    crashed: list[str]
    bars: Diff
    features: Diff
    anomalies: Diff
    store: Diff
    dead_letters: int
    dead_unexplained: Counter

    @property
    def ok(self) -> bool:
        return (
            not self.crashes
            and not self.dead_unexplained
            and self.bars.ok
            and self.features.ok
            and self.anomalies.ok
            and self.store.ok
        )

    @property
    def crashes(self) -> list[str]:
        """Deaths other than a worker's deliberate watchdog exit (restarted like a crash)."""
        return [c for c in self.crashed if not c.endswith("watchdog exit")]

    def cells(self) -> list[str]:
        took = "" if self.took_s is None else f"{self.took_s:.1f}"
        extra = ", ".join(f"{k[0]}/{k[1]} {n:+d}" for k, n in sorted(self.dead_unexplained.items()))
        dead = f"{self.dead_letters}" + (f" (unexplained {extra})" if extra else " (accounted)")
        return [
            self.window,
            took,
            ", ".join(self.crashed) or "-",
            str(self.bars),
            str(self.features),
            str(self.anomalies),
            str(self.store),
            dead,
            "yes" if self.ok else "NO",
        ]


def rows(d: Drills) -> list[Row]:
    """A row per fault window (and the lead-in before the first fault), then the overall row."""
    base, run, marks = d.baseline.snap, d.faulted.snap, d.faulted.marks
    bar_of = {**base.bar_of, **run.bar_of}
    bounds = [(-1, -1)] + [(m.bar_ms, m.wall_ms) for m in marks] + [(2**62, 2**62)]
    names = ["before the faults"] + [m.fault.name for m in marks]
    out = []
    for i, name in enumerate(names):
        lo, hi = bounds[i][0], bounds[i + 1][0]
        wlo, whi = bounds[i][1], bounds[i + 1][1]
        in_bars = lambda k, lo=lo, hi=hi: lo <= k[1] < hi  # noqa: E731
        in_ids = lambda i, lo=lo, hi=hi: lo <= bar_of[i][1] < hi  # noqa: E731

        def in_window(ms: int, a: int = wlo, b: int = whi) -> bool:
            return a <= ms < b

        dead = dead_letter_kinds(run.dead_letters, in_window)
        expected = d.expected_burst if name == "malformed burst" else Counter()
        if i == 0:
            expected = expected + dead_letter_kinds(base.dead_letters)
        mark = marks[i - 1] if i else None
        out.append(
            Row(
                name,
                mark.took_s if mark else None,
                mark.crashed if mark else [],
                diff(base.bars, run.bars, in_bars),
                diff(base.features, run.features, in_bars),
                diff(base.anomalies, run.anomalies, in_ids),
                diff(base.anomalies, run.stored, in_ids),
                sum(dead.values()),
                unexplained(dead, expected),
            )
        )
    dead = dead_letter_kinds(run.dead_letters)
    out.append(
        Row(
            "overall",
            d.faulted.seconds,
            [c for m in marks for c in m.crashed],
            diff(base.bars, run.bars),
            diff(base.features, run.features),
            diff(base.anomalies, run.anomalies),
            diff(base.anomalies, run.stored),
            sum(dead.values()),
            unexplained(dead, d.expected_burst + dead_letter_kinds(base.dead_letters)),
        )
    )
    return out


def summary(d: Drills) -> str:
    b, f = d.baseline.snap, d.faulted.snap
    return (
        f"baseline: {len(b.bars)} bars, {len(b.features)} feature vectors, "
        f"{len(b.anomalies)} anomalies ({len(b.stored)} stored), "
        f"{len(b.dead_letters)} dead letters, {d.baseline.seconds:.0f} s; "
        f"faulted: {len(f.bars)} bars, {len(f.features)} vectors, {len(f.anomalies)} "
        f"anomalies ({len(f.stored)} stored), {len(f.dead_letters)} dead letters "
        f"(burst: {sum(d.expected_burst.values())}), {d.faulted.seconds:.0f} s"
    )


def dead_letter_rows(d: Drills) -> list[list[object]]:
    """Dead letters by source and kind: baseline, faulted, expected from the burst."""
    base = dead_letter_kinds(d.baseline.snap.dead_letters)
    run = dead_letter_kinds(d.faulted.snap.dead_letters)
    keys = sorted(set(base) | set(run) | set(d.expected_burst))
    return [
        [f"{src}/{kind}", base[(src, kind)], run[(src, kind)], d.expected_burst[(src, kind)]]
        for src, kind in keys
    ]


def print_report(d: Drills, table: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.width = max(console.width, 160)
    t = Table(title="fault drills: faulted run vs undisturbed baseline (lost/dup, +extra)")
    for h in HEADERS:
        t.add_column(h)
    for r in table:
        t.add_row(*r.cells(), style=None if r.ok else "bold red")
    console.print(t)
    dl = Table(title="dead letters by source/kind")
    for h in ("source/kind", "baseline", "faulted", "burst sent"):
        dl.add_column(h)
    for row in dead_letter_rows(d):
        dl.add_row(*map(str, row))
    console.print(dl)
    console.print(summary(d))


def record_results(d: Drills, table: list[Row], speed: float) -> None:
    """Write the tables into benchmarks/RESULTS.md (section `drills`)."""
    body = "\n\n".join(
        [
            f"`make drill`: one replay day of {len({s for s, _ in d.baseline.snap.bars})} "
            f"symbols at speed {speed:g} through producer -> features -> score -> sink, faults "
            "one after another, compared with an undisturbed run. Cells are lost/dup (+extra).",
            md_table(HEADERS, [r.cells() for r in table]),
            md_table(("source/kind", "baseline", "faulted", "burst sent"), dead_letter_rows(d)),
            summary(d),
        ]
    )
    overall = table[-1]
    b, f = d.baseline.snap, d.faulted.snap
    restarted = ", ".join(overall.crashed) or "none"
    verdict = Verdict(
        f"fault drills: {len(table) - 2} faults one after another, speed {speed:g}",
        f"lost/dup: bars {overall.bars}, features {overall.features}, anomaly ids "
        f"{overall.anomalies}, stored {overall.store}; dead letters {overall.dead_letters} "
        f"({sum(map(abs, overall.dead_unexplained.values()))} unexplained); restarted: {restarted}",
        f"an undisturbed run: {len(b.bars)} bars, {len(b.features)} vectors, "
        f"{len(b.anomalies)} anomalies (faulted: {len(f.bars)}, {len(f.features)}, "
        f"{len(f.anomalies)})",
        "0 lost, 0 duplicated, 0 extra everywhere; every dead letter accounted for; no crash "
        "(a watchdog exit is restarted, not a crash)",
        met(all(r.ok for r in table)),
    )
    write_section("drills", "Fault drills", body, [verdict], command="make drill")
