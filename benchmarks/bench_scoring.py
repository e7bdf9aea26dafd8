"""Scoring stage: bars/s scored with explanations and bar-to-event latency, beside bare models.

The stage is `Scorer.score` as the worker runs it (per-symbol sequence buffer, both models in one
call each per batch of `kafka.consume_batch`, the combined decision, SHAP / reconstruction reasons
for flagged rows, cooldown and AnomalyEvent encoding). Two loads: a whole-market minute (10,000
symbols arriving together, their last 16 minutes already buffered) and five symbols minute by
minute. The baseline is the bare forward pass of both models on the same rows (forest
`score_samples` and one autoencoder `predict_on_batch`), no buffer, decision or explanation.
Models are trained here on simulated days (small, seconds), so the run needs no registry. Kafka
transport is not included (bench_ingest measures it).
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.common import tail, tail_cell, tail_text
from detection.detector import WINDOW
from detection.models.iforest import iforest_scores
from detection.models.lstm_ae import autoencoder_errors, configure_tensorflow
from detection.scorer import Cooldown, Scorer, SequenceBuffer, vectors_from_bars
from model_workers import dataset
from model_workers.fit import fit_models
from ops.results import Verdict, met, table, write_section
from producers.market_sim import labels_to_frame, simulate
from tickwatch.schemas import FeatureVector, encode
from tickwatch.settings import Settings

MARKET = int(os.environ.get("BENCH_SCORING_SYMBOLS", 10_000))
MARKET_MINUTES = int(os.environ.get("BENCH_SCORING_MINUTES", 4))
SMALL_MINUTES = 300
SYMBOLS = ["AAPL", "GOOGL", "MSFT", "TSLA", "VOO"]
GOAL_MARKET_S = 2.0  # a whole-market minute scored
GOAL_SMALL_MS = 50.0  # five symbols' minute, p99


def small_scorer(settings: Settings) -> tuple[Scorer, list[FeatureVector]]:
    """Models fitted on 6 simulated days (2 epochs) and the vectors of 3 later days."""
    sim = simulate(SYMBOLS, 9, 11)
    frame = dataset.frame_from_bars(sim.bars[: 6 * 390 * 5])
    fit = fit_models(
        frame,
        labels_to_frame(sim.labels),
        settings.model.sequence_length,
        2,
        settings.model,
        settings.model.cooldown_minutes,
        market_symbol=settings.features.market_symbol,
    )
    later = vectors_from_bars(sim.bars)[6 * 390 * 5 :]
    return fit.scorer(settings.model.sequence_length, settings.model.top_features), later


def market_minutes(source: list[FeatureVector], length: int) -> list[list[FeatureVector]]:
    """`length + MARKET_MINUTES` minutes of MARKET symbols; each replays a stretch of a real one.

    Symbol k follows one simulated symbol from a random warm bar on, so its sequence is coherent
    and flags come at the simulated rate (injected anomalies included).
    """
    rng = np.random.default_rng(0)
    series: dict[str, list[FeatureVector]] = {}
    for v in source:
        series.setdefault(v.symbol, []).append(v)
    names = sorted(series)
    n = length + MARKET_MINUTES
    t0 = source[-1].bar_start_ms + 3 * 86_400_000
    picks = [
        (names[k % len(names)], int(rng.integers(61, len(series[names[0]]) - n)))
        for k in range(MARKET)
    ]
    return [
        [
            series[name][start + m].model_copy(
                update={"symbol": f"S{k:05d}", "bar_start_ms": t0 + m * 60_000}
            )
            for k, (name, start) in enumerate(picks)
        ]
        for m in range(n)
    ]


def run_stage(
    scorer: Scorer,
    buffer: SequenceBuffer,
    cooldown: Cooldown,
    minute: list[FeatureVector],
    batch: int,
) -> tuple[float, int, int]:
    """(seconds, flagged, events) to score one minute in worker-sized batches and build events."""
    t0 = time.perf_counter()
    flagged = events = 0
    for i in range(0, len(minute), batch):
        for row in scorer.score(minute[i : i + batch], buffer):
            if row.flagged:
                flagged += 1
                if cooldown.admit(row.symbol, row.bar_start_ms):
                    encode(scorer.to_event(row, 0))
                    events += 1
    return time.perf_counter() - t0, flagged, events


def run_bare(scorer: Scorer, buffer: SequenceBuffer, minute: list[FeatureVector]) -> float:
    """Seconds for the bare forward pass of both models on the same rows (windows prebuilt)."""
    from detection.scorer import feature_matrix

    x = feature_matrix(minute)
    windows = np.stack([buffer.rows[v.symbol] for v in minute])
    t0 = time.perf_counter()
    iforest_scores(scorer.iforest.model, x)
    autoencoder_errors(scorer.lstm.model, windows)
    return time.perf_counter() - t0


def main() -> None:
    configure_tensorflow()
    settings = Settings(_env_file=None)
    scorer, later = small_scorer(settings)
    batch = settings.kafka.consume_batch
    history = max(scorer.length, WINDOW)
    minutes = market_minutes(later, history)
    buffer, cooldown = SequenceBuffer(scorer.length), Cooldown(settings.model.cooldown_minutes)
    # history scored untimed, as a running worker has: every symbol's sequence, evidence window
    # and threshold full (a window of empty rows reads every later move as a surprise)
    for minute in minutes[:history]:
        run_stage(scorer, buffer, cooldown, minute, batch)
    stage, bare, flagged = [], [], 0
    for minute in minutes[history:]:
        secs, f, _ = run_stage(scorer, buffer, cooldown, minute, batch)
        stage.append(secs)
        flagged += f
        bare.append(run_bare(scorer, buffer, minute))
    small_buf, small_cool = SequenceBuffer(scorer.length), Cooldown(5)
    small_stage, small_bare, small_flagged = [], [], 0
    by_minute: dict[int, list[FeatureVector]] = {}
    for v in later:
        by_minute.setdefault(v.bar_start_ms, []).append(v)
    for i, (_, minute) in enumerate(sorted(by_minute.items())[: SMALL_MINUTES + scorer.length]):
        secs, f, _ = run_stage(scorer, small_buf, small_cool, minute, batch)
        if i >= scorer.length:
            small_stage.append(secs)
            small_flagged += f
            small_bare.append(run_bare(scorer, small_buf, minute))
    market_rate, bare_rate = MARKET * len(stage) / sum(stage), MARKET * len(bare) / sum(bare)
    small_rate = len(SYMBOLS) * len(small_stage) / sum(small_stage)
    small_bare_rate = len(SYMBOLS) * len(small_bare) / sum(small_bare)

    def ms(x: float) -> str:
        return f"{x * 1000:,.1f}"

    def msec(x: float) -> str:
        return f"{x * 1000:,.1f} ms"

    def seconds(x: float) -> str:
        return f"{x:.2f} s"

    rows = [
        (f"whole market: {MARKET:,} symbols at once (stage)", stage, market_rate, bare_rate),
        (f"whole market: bare forward pass, same {MARKET:,} rows", bare, bare_rate, bare_rate),
        ("five symbols, minute by minute (stage)", small_stage, small_rate, small_bare_rate),
        ("five symbols: bare forward pass", small_bare, small_bare_rate, small_bare_rate),
    ]
    market_s, _ = tail(stage)
    small_s, small_stat = tail(small_stage)
    market_verdict = met(market_s <= GOAL_MARKET_S)
    small_verdict = met(small_s * 1000 <= GOAL_SMALL_MS and small_stat == "p99")
    body = (
        f"`Scorer.score` as the worker runs it (batches of {batch}, sequence buffer, decision, "
        "SHAP and reconstruction reasons for flagged rows, cooldown, event encoding), in one "
        f"process, TensorFlow on {os.cpu_count()} threads. Whole market: {MARKET_MINUTES} "
        f"minutes of {MARKET:,} symbols arriving together ({flagged} flagged rows explained); "
        f"latency = arrival of the minute to its last event built. Five symbols: "
        f"{len(small_stage)} minutes ({small_flagged} flagged). Kafka transport excluded. "
        "Rates are bars over the summed time of the minutes.\n\n"
        + table(
            ["load", "bars/s", "p50 ms", "p99 ms", "vs bare (bars/s)"],
            [
                [
                    name,
                    f"{rate:,.0f}",
                    tail_cell(s, 50, ms),
                    tail_cell(s, 99, ms),
                    f"{rate / b:.2f}x",
                ]
                for name, s, rate, b in rows
            ],
        )
        + f"\n\nGoals: {MARKET:,} symbols scored within {GOAL_MARKET_S:g} s "
        f"({tail_text(stage, seconds)}: {market_verdict}); {len(SYMBOLS)} symbols p99 within "
        f"{GOAL_SMALL_MS:g} ms ({tail_text(small_stage, msec)}: {small_verdict})."
    )
    verdicts = [
        Verdict(
            f"scoring with explanations: a whole-market minute ({MARKET:,} symbols at once)",
            f"{tail_text(stage, seconds)}, {market_rate:,.0f} bars/s",
            f"{market_rate / bare_rate:.2f}x the bare forward pass ({tail_text(bare, seconds)})",
            f"<= {GOAL_MARKET_S:g} s",
            market_verdict,
        ),
        Verdict(
            f"scoring with explanations: {len(SYMBOLS)} symbols, minute by minute",
            tail_text(small_stage, msec),
            f"{small_rate / small_bare_rate:.2f}x the bare forward pass "
            f"({tail_text(small_bare, msec)})",
            f"<= {GOAL_SMALL_MS:g} ms p99",
            small_verdict,
        ),
    ]
    write_section("scoring", "Scoring: explained anomaly decisions", body, verdicts)


if __name__ == "__main__":
    main()
