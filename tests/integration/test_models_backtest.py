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
    assert set(metrics.index) == {"iforest", "lstm_ae", "ensemble", "prototype_rule", "zscore_rule"}
    assert (metrics["events"] == len(labels)).all()
    refused = pd.read_csv(tmp_path / "out" / "refused_rows.csv")
    assert len(refused) == 1 and "OHLC" in refused["reason"][0]
    text = report.read_text()
    assert "| ensemble |" in text and "| prototype_rule |" in text
    for symbol in bars["symbol"].unique():
        assert f"]({symbol}.png)" in text and (tmp_path / "out" / f"{symbol}.png").stat().st_size
