"""The whole-market end-to-end benchmark's bookkeeping and report (`bench_market_e2e`).

`MinuteLedger` is what the bench's readers fill in as a run goes: every bar and feature vector
read back (each minute's, with its broker append time, partition and offset) and the score
group's committed offsets polled over time. From that, per minute: its bars and vectors (lost
and duplicated against the symbols published), the last bar's append to `bars`, and the moment
the scoring stage's committed offsets passed the minute's last vector on every partition: the
minute done end to end. `Run` holds one configuration's figures (engine, workers per stage),
and the rest of the module turns runs into the section's tables, projection and verdicts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.common import tail, tail_cell, tail_text
from ops.hops import HopStat
from ops.results import Verdict, met, table

GOAL_S = 2.0  # the minute's last bar in Kafka -> its last vector scored, one worker per stage


@dataclass(frozen=True)
class Minute:
    """One minute end to end: what came through, and when (Unix ms, one host's clock)."""

    start_ms: int
    bars: int
    bar_symbols: int
    vectors: int
    vector_symbols: int
    first_bar_ms: int | None  # the minute's first bar appended to `bars` (LogAppendTime)
    last_bar_ms: int | None  # its last bar appended
    last_vector_ms: int | None  # its last feature vector appended to `features`
    done_ms: float | None  # the first poll that saw the score group committed past its vectors

    @property
    def latency_s(self) -> float | None:
        """Last bar in Kafka -> the scoring stage committed past the minute's last vector."""
        if self.done_ms is None or self.last_bar_ms is None:
            return None
        return max(0.0, self.done_ms - self.last_bar_ms) / 1000

    @property
    def features_s(self) -> float | None:
        """Last bar in Kafka -> the minute's last vector appended to `features`."""
        if self.last_vector_ms is None or self.last_bar_ms is None:
            return None
        return max(0.0, self.last_vector_ms - self.last_bar_ms) / 1000


class MinuteLedger:
    """Bars, vectors and the score group's committed offsets as the bench's readers see them
    (thread-safe: one reader thread per source)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bars: dict[int, Counter[str]] = {}
        self._bar_times: dict[int, tuple[int, int]] = {}  # minute -> (first, last) append
        self._vectors: dict[int, Counter[str]] = {}
        self._last_vector: dict[int, int] = {}
        self._targets: dict[int, dict[int, int]] = {}  # minute -> partition -> offset after
        self._commits: list[tuple[float, dict[int, int]]] = []  # (polled at ms, offsets)

    def bar(self, start_ms: int, symbol: str, appended_ms: int) -> None:
        with self._lock:
            self._bars.setdefault(start_ms, Counter())[symbol] += 1
            first, last = self._bar_times.get(start_ms, (appended_ms, appended_ms))
            self._bar_times[start_ms] = (min(first, appended_ms), max(last, appended_ms))

    def vector(
        self, start_ms: int, symbol: str, partition: int, offset: int, appended_ms: int
    ) -> None:
        with self._lock:
            self._vectors.setdefault(start_ms, Counter())[symbol] += 1
            self._last_vector[start_ms] = max(self._last_vector.get(start_ms, 0), appended_ms)
            targets = self._targets.setdefault(start_ms, {})
            targets[partition] = max(targets.get(partition, 0), offset + 1)

    def committed(self, polled_ms: float, offsets: dict[int, int]) -> None:
        """One poll of the score group's committed offsets (kept only when they moved)."""
        with self._lock:
            if not self._commits or self._commits[-1][1] != offsets:
                self._commits.append((polled_ms, dict(offsets)))

    def starts(self) -> list[int]:
        """The minutes whose bars have been seen, in order."""
        with self._lock:
            return sorted(self._bars)

    def done_ms(self, start_ms: int, symbols: int) -> float | None:
        """When the score group had committed past every vector of the minute (None before all
        `symbols` vectors were read, or before the commit)."""
        with self._lock:
            if len(self._vectors.get(start_ms, ())) < symbols:
                return None
            targets = self._targets[start_ms]
            for polled_ms, offsets in self._commits:
                if all(offsets.get(p, -1) >= o for p, o in targets.items()):
                    return polled_ms
            return None

    def minute(self, start_ms: int, symbols: int) -> Minute:
        done = self.done_ms(start_ms, symbols)
        with self._lock:
            bars, vectors = self._bars.get(start_ms, Counter()), self._vectors.get(start_ms)
            times = self._bar_times.get(start_ms, (None, None))
            return Minute(
                start_ms,
                sum(bars.values()),
                len(bars),
                sum(vectors.values()) if vectors else 0,
                len(vectors) if vectors else 0,
                times[0],
                times[1],
                self._last_vector.get(start_ms),
                done,
            )


def overlapped(minutes: Sequence[Minute]) -> int:
    """Minutes not done before the next minute's first bar reached Kafka (their spacing was too
    short for the pipeline: the next one waited behind them)."""
    return sum(
        1
        for a, b in zip(minutes, minutes[1:], strict=False)
        if a.done_ms is None or (b.first_bar_ms is not None and a.done_ms > b.first_bar_ms)
    )


@dataclass
class Run:
    """One configuration: features engine and workers per stage, its timed minutes and costs."""

    engine: str
    workers: int
    symbols: int
    minutes: list[Minute] = field(default_factory=list)
    scored: int = 0  # vectors the score stage committed over the timed minutes (its hop count)
    anomalies: int = 0  # anomaly events committed over the timed minutes
    hops: dict[str, HopStat] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # stage -> CPU s over the timed minutes
    bare_s: list[float] = field(default_factory=list)  # bare produce + consume of one minute

    @property
    def label(self) -> str:
        engine = "batch engine" if self.engine == "batch" else "Faust engine"
        return f"{engine}, {self.workers} worker{'s' * (self.workers > 1)} per stage"

    @property
    def latencies(self) -> list[float]:
        return [x for m in self.minutes if (x := m.latency_s) is not None]

    @property
    def features_latencies(self) -> list[float]:
        return [x for m in self.minutes if (x := m.features_s) is not None]

    def errors(self) -> dict[str, int]:
        """Every count that must be 0: bars and vectors lost or duplicated per timed minute,
        vectors scored fewer or more times than there were, minutes never done, overlaps."""
        n, vectors = self.symbols, sum(m.vector_symbols for m in self.minutes)
        return {
            "bars lost": sum(max(0, n - m.bar_symbols) for m in self.minutes),
            "bars duplicated": sum(m.bars - m.bar_symbols for m in self.minutes),
            "vectors lost": sum(max(0, n - m.vector_symbols) for m in self.minutes),
            "vectors duplicated": sum(m.vectors - m.vector_symbols for m in self.minutes),
            "vectors not scored": max(0, vectors - self.scored),
            "vectors scored twice": max(0, self.scored - vectors),
            "minutes not done": sum(1 for m in self.minutes if m.latency_s is None),
            "minutes overlapped": overlapped(self.minutes),
        }

    @property
    def error_total(self) -> int:
        return sum(self.errors().values())

    def tail_s(self) -> float:
        return tail(self.latencies)[0] if self.latencies else float("inf")

    def ok(self) -> bool:
        return self.error_total == 0 and self.tail_s() <= GOAL_S

    def cpu_per_minute(self, stage: str) -> float:
        return self.cpu_s.get(stage, 0.0) / max(1, len(self.minutes))


def _s(x: float) -> str:
    return f"{x:.2f}"


def _s_unit(x: float) -> str:
    return f"{x:.2f} s"


def _error_text(run: Run) -> str:
    bad = {k: v for k, v in run.errors().items() if v}
    return ", ".join(f"{k} {v}" for k, v in bad.items()) if bad else "0 errors"


def rows(runs: Sequence[Run]) -> list[list[object]]:
    out: list[list[object]] = []
    for r in runs:
        hop = r.hops.get("features_to_scores")
        out.append(
            [
                r.label,
                len(r.minutes),
                tail_cell(r.latencies, 50, _s),
                tail_cell(r.latencies, 99, _s),
                tail_cell(r.features_latencies, 99, _s),
                hop.p99_text() if hop else "-",
                r.scored,
                r.anomalies,
                _error_text(r),
                tail_text(r.bare_s, _s),
                "met" if r.ok() else "not met",
            ]
        )
    return out


HEADERS = [
    "configuration",
    "minutes",
    "p50 s",
    "p99 s",
    "-> last vector in `features`, p99 s",
    "features_to_scores hop p99 (per vector, bucket-interpolated)",
    "vectors scored",
    "anomaly events",
    "errors (lost / duplicated / not done / overlapped)",
    "bare produce + consume of the minute, s",
    f"<= {GOAL_S:g} s, 0 errors",
]


def cpu_rows(runs: Sequence[Run], stages: Sequence[str]) -> list[list[object]]:
    """CPU seconds each stage's processes spent per timed minute, and bars per CPU second."""
    out: list[list[object]] = []
    for r in runs:
        cells: list[object] = [r.label]
        for stage in stages:
            cpu = r.cpu_per_minute(stage)
            cells.append(f"{cpu:.2f} ({r.symbols / cpu:,.0f}/s)" if cpu > 0 else "-")
        out.append(cells)
    return out


def projection(one: Run, scaled: Sequence[str], workers: Sequence[int] = (2, 4, 8)) -> str:
    """Per-core throughput from one run's measured CPU, and what it projects for a machine with
    a free core per worker: the `scaled` stages' CPU per minute divided by their workers, plus
    the part of the measured tail that was not their CPU (the producer, Kafka hops, polls,
    commits), taken as it was."""
    cpu = {stage: one.cpu_per_minute(stage) for stage in one.cpu_s}
    total, busy = sum(cpu.values()), sum(cpu.get(stage, 0.0) for stage in scaled)
    if busy <= 0 or not one.latencies:
        return "No CPU figures: no projection."
    measured, stat = tail(one.latencies)
    rest = max(0.0, measured - busy)
    per_core = ", ".join(
        f"{stage} {one.symbols / c:,.0f} bars/s" for stage, c in cpu.items() if c > 0
    )
    projected = ", ".join(f"{w} workers per stage {rest + busy / w:.2f} s" for w in workers)
    return (
        f"Per-core throughput ({one.label}; CPU time of each stage's processes over the timed "
        f"minutes): {per_core}; the whole pipeline {one.symbols / total:,.0f} bars per CPU "
        f"second, so one core keeps up with a real-time market of "
        f"{one.symbols * 60 / total:,.0f} symbols. Projection for a machine with a free core per "
        f"worker: {' and '.join(scaled)} spend {busy:.2f} CPU s on a {one.symbols:,}-symbol "
        f"minute, split over the workers, plus the {rest:.2f} s of the measured {stat} "
        f"({measured:.2f} s) that was not their CPU: {projected} (a projection from this run's "
        "figures, not a measurement)."
    )


def verdicts(runs: Sequence[Run]) -> list[Verdict]:
    out = []
    for r in runs:
        bare = tail_text(r.bare_s, _s_unit)
        out.append(
            Verdict(
                f"whole-market minute end to end ({r.symbols:,} symbols): {r.label}",
                f"last bar in Kafka -> last vector scored: {tail_text(r.latencies, _s_unit)} "
                f"over {len(r.minutes)} minutes; {_error_text(r)}",
                f"bare produce + consume of the same bars: {bare}",
                f"<= {GOAL_S:g} s every minute, 0 lost / duplicated / unscored",
                met(r.ok()),
            )
        )
    return out


def section(
    runs: Sequence[Run],
    *,
    spacing_s: float,
    warm: int,
    partitions: int,
    stages: Sequence[str],
    cores: int | None,
) -> str:
    """The RESULTS.md section: how it was measured, the table, CPU per stage, the projection."""
    one = next((r for r in runs if r.workers == 1 and r.engine == "batch"), runs[0])
    return (
        f"{runs[0].symbols:,} symbols (`tickwatch replay-server --market-symbols`: ticker-like "
        f"names, every symbol's `AM` bar of a minute sent together) -> `tickwatch produce` over "
        f"the WebSocket -> `bars` -> `tickwatch features` -> `features` -> `tickwatch score`, "
        f"on a private stack (own broker and Redis), the drills' small champion, topics of "
        f"{partitions} partitions, each stage's workers one consumer group. A minute every "
        f"{spacing_s:g} s (faster than real time; spaced so a minute is done before the next "
        f"one's first bar, which the 'overlapped' count checks); the first {warm} minutes warm "
        f"the workers up (every symbol's LSTM sequence and evidence window full), the next "
        f"{len(one.minutes)} are timed. Figure: from the minute's last bar appended to `bars` "
        f"(its Kafka LogAppendTime: acknowledged into Kafka) to the first poll (every 20 ms) "
        f"that finds the score group's committed offsets past the minute's last feature vector "
        f"on every partition, i.e. its last vector scored and its transaction committed (anomaly "
        f"events exist for flagged vectors only; every vector commits). Per-minute counts: bars "
        f"and vectors read back per symbol (lost, duplicated), vectors scored (the score "
        f"stage's `features_to_scores` hop count over the timed minutes) against vectors. Bare: "
        f"the same bars produced and consumed back by a bare confluent-kafka client. A tail "
        f"of fewer than 100 minutes is their max with n (and no median). The broker, Redis, the "
        f"replay server, the producer, every worker and the bench's readers share the "
        f"{cores} cores.\n\n"
        + table(HEADERS, rows(runs))
        + "\n\nCPU seconds per minute by stage (all its workers; in brackets bars per CPU "
        "second):\n\n"
        + table(["configuration", *stages], cpu_rows(runs, stages))
        + "\n\n"
        + projection(one, [s for s in stages if s != "producer"])  # one producer per feed
    )
