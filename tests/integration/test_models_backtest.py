"""`tickwatch backtest` on a user CSV: one output row per bar, metrics for every detector, plots."""

from __future__ import annotations

import pandas as pd
import pytest
from model_support import held_out, with_models

from model_workers.backtest import OUTPUT_COLUMNS, run
from producers.market_sim import bars_to_frame, labels_to_frame

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_backtest_writes_scores_metrics_and_report_from_csv(settings, tmp_path):
    s = with_models(settings, tmp_path)
    sim = held_out()
    day_end = sim.bars[0].start_ms + 2 * 86_400_000
    bars = bars_to_frame([b for b in sim.bars if b.start_ms < day_end])
    bars["timestamp"] = pd.to_datetime(bars["timestamp"], unit="ms", utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )  # ISO-8601 here, Unix ms in the labels
    bars_csv, labels_csv = tmp_path / "bars.csv", tmp_path / "labels.csv"
    bars.to_csv(bars_csv, index=False)
    with bars_csv.open("a") as fh:
        fh.write("AAPL,2025-06-02T15:00:00Z,10,9,11,10,100,10,1\n")  # high < low: refused
    labels = labels_to_frame([lb for lb in sim.labels if lb.end_ms < day_end])
    labels.to_csv(labels_csv, index=False)

    report = run(s, bars_csv, labels_csv, tmp_path / "out")

    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert list(scores.columns) == OUTPUT_COLUMNS and len(scores) == len(bars)
    assert scores["model"].unique().tolist() == ["iforest-v1+lstm_ae-v1"]
    flagged = scores[scores["is_anomaly"]]
    assert len(flagged) and flagged["top_features"].str.contains("iforest").all()
    assert (scores.loc[~scores["is_anomaly"], "top_features"].isna()).all()
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv").set_index("detector")
    assert set(metrics.index) == {
        "iforest",
        "lstm_ae",
        "evidence",
        "ensemble",
        "prototype_rule",
        "zscore_rule",
    }
    assert (metrics["events"] == len(labels)).all()
    refused = pd.read_csv(tmp_path / "out" / "refused_rows.csv")
    assert len(refused) == 1 and "OHLC" in refused["reason"][0]
    text = report.read_text()
    assert "| ensemble |" in text and "| prototype_rule |" in text
    for symbol in bars["symbol"].unique():
        assert f"]({symbol}.png)" in text and (tmp_path / "out" / f"{symbol}.png").stat().st_size


def test_cli_fits_on_the_first_days_and_scores_the_rest_as_the_stream_would(tmp_path):
    """`tickwatch backtest --fit-days N`: fitted in memory on the file's own first days (no
    registry), scores.csv has one row per later bar, ISO-8601 timestamps in and out; and the
    backtest's decisions equal a stream scoring the same bars in batches of any size."""
    import numpy as np
    from typer.testing import CliRunner

    from detection.scorer import SequenceBuffer, vectors_from_bars
    from model_workers.backtest import fit_scorer, scored_frame, split_fit_days
    from producers.market_sim import MarketFamily, simulate
    from tickwatch.cli import app
    from tickwatch.settings import Settings

    sim = simulate(["AAPL", "MSFT", "VOO"], 4, seed=77, family=MarketFamily.draw(77))
    frame = bars_to_frame(sim.bars)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    path = tmp_path / "my-market.csv"
    frame.to_csv(path, index=False)
    env = {"TICKWATCH_RUN_DIR": str(tmp_path / "run"), "TICKWATCH_MODEL__EPOCHS": "1"}
    out = CliRunner().invoke(
        app,
        ["backtest", "--bars", str(path), "--fit-days", "3", "--out", str(tmp_path / "o")],
        env=env,
    )
    assert out.exit_code == 0, out.output
    scores = pd.read_csv(tmp_path / "o" / "scores.csv")
    fit, test = split_fit_days(sim.bars, 3)
    assert len(scores) == len(test)
    assert scores["timestamp"].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").all()
    assert not (tmp_path / "run" / "mlflow").exists()  # the registry was not touched

    s = Settings(_env_file=None, model={"epochs": 1})
    scorer = fit_scorer(s, fit, None, epochs=1)
    batch = scored_frame(scorer, test, s, fit)
    vectors = vectors_from_bars([*fit, *test])
    buffer, rows, rng, i = SequenceBuffer(scorer.length), [], np.random.default_rng(0), 0
    while i < len(vectors):  # the worker's batches: any size, one buffer across them
        n = int(rng.integers(1, 700))
        rows += scorer.score(vectors[i : i + n], buffer)
        i += n
    first = test[0].start_ms
    stream = {
        (r.symbol, r.bar_start_ms): (r.flagged, r.threshold)
        for r in rows
        if r.bar_start_ms >= first
    }
    got = {(r.symbol, r.bar_start_ms): (r.is_anomaly, r.threshold) for r in batch.itertuples()}
    assert got == stream
    assert batch["is_anomaly"].any()
