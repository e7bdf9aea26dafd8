"""Results of the end-to-end benchmark: one `Step` per replay speed, its table, plot and section."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import RESULTS, percentile, table

BREAK_P99_MS = 5_000.0
KEPT_UP = 0.9  # vectors out / bars in, below it the pipeline fell behind
PLOT = Path(__file__).parent / "e2e_latency.png"


@dataclass
class Step:
    """One replay speed: input rates, latencies, the bare baseline and the verdict."""

    speed: float
    symbols: int
    bars_s: float = 0.0
    trades_s: float = 0.0
    vectors_out: int = 0
    bars_in: int = 0
    scored: int = 0  # feature vectors the score worker had committed at the window's end
    vectors_total: int = 0  # feature vectors in the topic at the window's end
    features_ms: list[float] = field(default_factory=list)
    anomalies_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)

    @property
    def msgs_s(self) -> float:
        return self.bars_s + self.trades_s

    @property
    def offered_bars_s(self) -> float:
        """Bars per second the replay speed asks for (one bar per symbol per simulated minute)."""
        return self.speed / 60 * self.symbols

    @property
    def fed(self) -> float:
        """Share of the offered bars that reached Kafka (below KEPT_UP the feed fell behind)."""
        return self.bars_s / self.offered_bars_s

    @property
    def kept_up(self) -> float:
        return self.vectors_out / self.bars_in if self.bars_in else 0.0

    @property
    def scored_share(self) -> float:
        return self.scored / self.vectors_total if self.vectors_total else 0.0

    @property
    def why_broke(self) -> list[str]:
        """What broke at this speed (empty: it held)."""
        checks = {
            "features p99": percentile(self.features_ms, 99) > BREAK_P99_MS,
            "anomaly p99": bool(self.anomalies_ms)
            and percentile(self.anomalies_ms, 99) > BREAK_P99_MS,
            "feed behind": self.fed < KEPT_UP,
            "features behind": self.kept_up < KEPT_UP,
            "scoring behind": self.scored_share < KEPT_UP,
        }
        return [name for name, bad in checks.items() if bad]

    @property
    def broke(self) -> bool:
        return bool(self.why_broke)


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):,.0f}" if values else "-"


def _ratio(values: list[float], bare_p99: float) -> str:
    return f"{percentile(values, 99) / bare_p99:,.0f}x" if values and bare_p99 > 0 else "-"


def rows(steps: list[Step]) -> list[list[object]]:
    """One table row per speed."""
    out: list[list[object]] = []
    for s in steps:
        bare99 = percentile(s.bare_ms, 99)
        out.append(
            [
                f"{s.speed:g}",
                f"{s.bars_s:,.0f}",
                f"{s.trades_s:,.0f}",
                _ms(s.features_ms, 50),
                _ms(s.features_ms, 99),
                len(s.anomalies_ms),
                _ms(s.anomalies_ms, 50),
                _ms(s.anomalies_ms, 99),
                f"{percentile(s.bare_ms, 50):,.1f}",
                f"{bare99:,.1f}",
                f"{_ratio(s.features_ms, bare99)} / {_ratio(s.anomalies_ms, bare99)}",
                f"{s.fed:.2f}",
                f"{s.kept_up:.2f}",
                f"{s.scored_share:.2f}",
                "broke: " + ", ".join(s.why_broke) if s.broke else "held",
            ]
        )
    return out


def plot(steps: list[Step]) -> None:
    """p99 latency against load (bars + trades per second), log-log, with the bare round trip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s.msgs_s for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, [percentile(s.features_ms, 99) for s in steps], "o-", label="ingest -> features")
    anom = [(s.msgs_s, percentile(s.anomalies_ms, 99)) for s in steps if s.anomalies_ms]
    if anom:
        ax.plot(*zip(*anom, strict=True), "s--", label="ingest -> anomaly event")
    ax.plot(x, [percentile(s.bare_ms, 99) for s in steps], "^:", label="bare Kafka round trip")
    ax.axhline(BREAK_P99_MS, color="grey", lw=0.8, label=f"break ({BREAK_P99_MS / 1000:g} s)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="load: bars + trades into Kafka per second",
        ylabel="p99 latency (ms)",
        title="tickwatch end to end: p99 latency against load",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def stage_row(section: str, row_start: str) -> list[str] | None:
    """Cells of a row of another benchmark's RESULTS.md section, if it is there."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    block = re.search(rf"<!-- {section}:start -->(.*?)<!-- {section}:end -->", text, re.S)
    for line in (block.group(1) if block else "").splitlines():
        if line.startswith(f"| {row_start}"):
            return [c.strip() for c in line.strip("|").split("|")]
    return None


def whole_market_text() -> str:
    """The whole-market minute from the stage figures already in RESULTS.md (not re-run here)."""
    score = stage_row("scoring", "whole market: 10,000 symbols at once (stage)")
    batch = stage_row("market-minute", "batch engine, one worker")
    faust = stage_row("market-minute", "Faust engine, one worker")
    if not score or not batch or not faust:
        return "Whole-market minute: see the scoring and features sections (not re-run here)."
    features_s, score_s = float(batch[1]), float(score[3].replace(",", "")) / 1000
    return (
        f"Whole-market minute (10,000 symbols at once), from the stage sections, not re-run "
        f"here: the features stage takes {features_s:.2f} s for it on one batch-engine worker "
        f"({float(faust[1]):.2f} s on one Faust worker), scoring p99 {score_s:.2f} s. Adding the "
        f"two (an estimate; the Kafka hops and the feed excluded), a whole-market minute needs "
        f"~{features_s + score_s:.1f} s from its bars to its last anomaly event, one worker "
        "each: well inside the minute."
    )


def _feed_note(step: Step) -> str:
    """When the feed is what fell behind, say so: the stages after it were not the limit."""
    if step.why_broke != ["feed behind"]:
        return ""
    return (
        f" Only {step.fed:.0%} of the offered {step.offered_bars_s:,.0f} bars/s reached Kafka: "
        f"the feed (replay server -> producer, one process each) saturated at "
        f"{step.msgs_s:,.0f} messages/s while features and scoring kept up with what came."
    )


def section(
    steps: list[Step], window_s: float, drain_s: float, bare_s: float, linger_ms: int
) -> str:
    """The RESULTS.md section text."""
    headers = [
        "speed (sim min/min)",
        "bars/s",
        "trades/s",
        "features p50 ms",
        "features p99 ms",
        "anomalies",
        "anomaly p50 ms",
        "anomaly p99 ms",
        "bare p50 ms",
        "bare p99 ms",
        "p99 / bare p99 (features / anomaly)",
        "bars in / offered",
        "vectors out / bars in",
        "scored / vectors",
        "verdict",
    ]
    last_held = next((s for s in reversed(steps) if not s.broke), None)
    held = (
        f"Highest speed held: {last_held.speed:g} ({last_held.bars_s:,.0f} bars/s, "
        f"{last_held.trades_s:,.0f} trades/s, features p99 "
        f"{percentile(last_held.features_ms, 99):,.0f} ms)."
        if last_held
        else "No speed held."
    )
    broke = next((s for s in steps if s.broke), None)
    broke_text = (
        f" It broke at speed {broke.speed:g} ({', '.join(broke.why_broke)})." + _feed_note(broke)
        if broke
        else " No speed in the list broke it."
    )
    return (
        f"Private stack (own broker and Redis), the fault drills' small champion, "
        f"{steps[0].symbols} symbols. Each "
        f"replay speed runs producer -> features -> score on a fresh topic prefix for a "
        f"{window_s:g} s window (then {drain_s:g} s to drain). Rates are bars and trades reaching "
        f"Kafka; latency is from ingest (`tw-ingest-ms`: the producer receiving the replay "
        f"server's frame on loopback) to our consumer reading the feature vector / anomaly event. "
        f"Bare: a confluent-kafka producer -> consumer round trip at the same message rate on the "
        f"same broker (same producer settings: idempotent, acks=all, lz4, linger "
        f"{linger_ms} ms), {bare_s:g} s. A speed breaks when the features or "
        f"anomaly p99 passes {BREAK_P99_MS / 1000:g} s, fewer than {KEPT_UP:.0%} of the window's "
        f"bars come out as vectors within it, fewer than {KEPT_UP:.0%} of the bars the speed "
        f"offers (speed / 60 x symbols per second) reach Kafka, or the score worker has "
        f"committed less than {KEPT_UP:.0%} of the vectors at the window's end. Workers start "
        f"(and their consumer groups are assigned) before the feed does. Anomalies are rare: "
        f"their count is shown with their percentiles.\n\n{table(headers, rows(steps))}\n\n"
        f"{held}{broke_text} Plot: `benchmarks/{PLOT.name}`.\n\n{whole_market_text()}"
    )
