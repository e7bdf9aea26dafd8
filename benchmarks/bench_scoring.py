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

from benchmarks.common import percentile, table, write_section
from model_workers import dataset
from model_workers.fit import fit_models
from model_workers.models.iforest import iforest_scores
from model_workers.models.lstm_ae import autoencoder_errors, configure_tensorflow
from model_workers.registry import LoadedModel, model_metadata
from model_workers.scorer import Cooldown, Scorer, SequenceBuffer, vectors_from_bars
from producers.market_sim import labels_to_frame, simulate
from tickwatch.schemas import FeatureVector, encode
from tickwatch.settings import Settings

MARKET = int(os.environ.get("BENCH_SCORING_SYMBOLS", 10_000))
MARKET_MINUTES = int(os.environ.get("BENCH_SCORING_MINUTES", 4))
SMALL_MINUTES = 300
SYMBOLS = ["AAPL", "GOOGL", "MSFT", "TSLA", "VOO"]


def small_scorer(settings: Settings) -> tuple[Scorer, list[FeatureVector]]:
    """Models fitted on 6 simulated days (2 epochs) and the vectors of 3 later days."""
    sim = simulate(SYMBOLS, 9, 11)
    frame = dataset.frame_from_bars(sim.bars[: 6 * 390 * 5])
    fit = fit_models(
        frame,
        labels_to_frame(sim.labels),
        settings.model.sequence_length,
        2,
        settings.model.false_alarm_rate,
        settings.model.cooldown_minutes,
    )
    forest = LoadedModel(
        "tickwatch-iforest", "1", fit.iforest, fit.iforest_cal, model_metadata(fit.iforest_cal)
    )
    lstm = LoadedModel(
        "tickwatch-lstm-ae",
        "1",
        fit.lstm,
        fit.lstm_cal,
        model_metadata(
            fit.lstm_cal,
            sequence_length=settings.model.sequence_length,
            error_scale=[float(v) for v in fit.lstm_scale],
        ),
    )
    later = vectors_from_bars(sim.bars)[6 * 390 * 5 :]
    return Scorer(forest, lstm, settings.model.top_features), later


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
    from model_workers.scorer import feature_matrix

    x = feature_matrix(minute)
    windows = np.stack([np.stack(buffer.rows[v.symbol]) for v in minute])
    t0 = time.perf_counter()
    iforest_scores(scorer.iforest.model, x)
    autoencoder_errors(scorer.lstm.model, windows)
    return time.perf_counter() - t0


def main() -> None:
    configure_tensorflow()
    settings = Settings(_env_file=None)
    scorer, later = small_scorer(settings)
    batch = settings.kafka.consume_batch
    minutes = market_minutes(later, scorer.length)
    buffer, cooldown = SequenceBuffer(scorer.length), Cooldown(settings.model.cooldown_minutes)
    for minute in minutes[: scorer.length]:  # history, so every symbol has a full sequence
        for v in minute:
            buffer.push(v.symbol, v.bar_start_ms, scorer_row(v))
    stage, bare, flagged = [], [], 0
    for minute in minutes[scorer.length :]:
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
    market_rate = MARKET / np.median(stage)
    bare_rate = MARKET / np.median(bare)
    rows = [
        [
            f"whole market: {MARKET:,} symbols at once (stage)",
            f"{market_rate:,.0f}",
            f"{percentile(stage, 50) * 1000:.0f}",
            f"{percentile(stage, 99) * 1000:.0f}",
            f"{market_rate / bare_rate:.2f}x",
        ],
        [
            f"whole market: bare forward pass, same {MARKET:,} rows",
            f"{bare_rate:,.0f}",
            f"{percentile(bare, 50) * 1000:.0f}",
            f"{percentile(bare, 99) * 1000:.0f}",
            "1.00x",
        ],
        [
            "five symbols, minute by minute (stage)",
            f"{5 / np.median(small_stage):,.0f}",
            f"{percentile(small_stage, 50) * 1000:.1f}",
            f"{percentile(small_stage, 99) * 1000:.1f}",
            f"{np.median(small_bare) / np.median(small_stage):.2f}x",
        ],
        [
            "five symbols: bare forward pass",
            f"{5 / np.median(small_bare):,.0f}",
            f"{percentile(small_bare, 50) * 1000:.1f}",
            f"{percentile(small_bare, 99) * 1000:.1f}",
            "1.00x",
        ],
    ]
    body = (
        f"`Scorer.score` as the worker runs it (batches of {batch}, sequence buffer, decision, "
        "SHAP and reconstruction reasons for flagged rows, cooldown, event encoding), in one "
        f"process, TensorFlow on {os.cpu_count()} threads. Whole market: {MARKET_MINUTES} "
        f"minutes of {MARKET:,} symbols arriving together ({flagged} flagged rows explained); "
        f"latency = arrival of the minute to its last event built. Five symbols: "
        f"{len(small_stage)} minutes ({small_flagged} flagged). Kafka transport excluded.\n\n"
        + table(["load", "bars/s", "p50 ms", "p99 ms", "vs bare"], rows)
        + f"\n\nGoals: {MARKET:,} symbols scored within 2 s (measured p99 "
        f"{percentile(stage, 99):.2f} s); five symbols p99 under 50 ms (measured "
        f"{percentile(small_stage, 99) * 1000:.1f} ms)."
    )
    write_section("scoring", "Scoring: explained anomaly decisions", body)


def scorer_row(v: FeatureVector) -> np.ndarray:
    """One vector's model features, as the buffer stores them."""
    from model_workers.scorer import feature_matrix

    return feature_matrix([v])[0]


if __name__ == "__main__":
    main()
