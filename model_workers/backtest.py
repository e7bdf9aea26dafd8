"""`tickwatch backtest`: score a CSV of bars as the stream does; report event-level metrics."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from model_workers import dataset
from model_workers.evaluation import EventMetrics
from model_workers.fit import evaluate_frame
from model_workers.rules import prototype_rule, zscore_rule
from model_workers.scorer import RowScore, Scorer, vectors_from_bars
from producers.bars_csv import parse_timestamp, read_bars_csv
from tickwatch.features import MODEL_FEATURES
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = ["symbol", "timestamp", "score", "is_anomaly", "model", "top_features"]


def read_labels_csv(path: Path) -> pd.DataFrame:
    """Labels CSV symbol,start,end,type (times ISO-8601 UTC or Unix ms) as a frame in Unix ms."""
    df = pd.read_csv(path, dtype=str)
    missing = {"symbol", "start", "end", "type"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; need symbol,start,end,type")
    return pd.DataFrame(
        {
            "symbol": df["symbol"].str.strip(),
            "start": df["start"].map(parse_timestamp).astype("int64"),
            "end": df["end"].map(parse_timestamp).astype("int64"),
            "type": df["type"].str.strip(),
        }
    )


def load_scorer(settings: Settings, model_uri: str | None, run_id: str | None) -> Scorer:
    """The champion pair, a "FOREST_VERSION,LSTM_VERSION" pair, or the pair a training run made."""
    if model_uri:
        forest, lstm = (v.strip() for v in model_uri.split(","))
        return Scorer.from_versions(settings, (forest, lstm))
    if run_id:
        from model_workers.registry import use_tracking

        client = use_tracking(settings)
        versions = []
        for name in (settings.mlflow.iforest_model_name, settings.mlflow.lstm_model_name):
            found = [
                mv.version
                for mv in client.search_model_versions(f"name='{name}'")
                if mv.run_id == run_id
            ]
            if not found:
                raise LookupError(f"run {run_id} registered no version of {name}")
            versions.append(str(found[0]))
        return Scorer.from_versions(settings, (versions[0], versions[1]))
    return Scorer.from_registry(settings)


def scored_frame(scorer: Scorer, bars: list, settings: Settings) -> pd.DataFrame:
    """One row per bar: features, each model's flag, the combined score, flag and reasons."""
    vectors = vectors_from_bars(
        bars, settings.features.market_symbol, settings.features.beta_window
    )
    rows = scorer.score(vectors)
    df = pd.DataFrame(
        {
            "symbol": [v.symbol for v in vectors],
            "bar_start_ms": [v.bar_start_ms for v in vectors],
            "close": [v.close for v in vectors],
            "volume": [v.volume for v in vectors],
            "warm": [v.warm for v in vectors],
            "log_return": [v.features["log_return"] for v in vectors],
            **{k: [v.features[k] for v in vectors] for k in MODEL_FEATURES},
            "score": [_combined_score(scorer, r) for r in rows],
            "is_anomaly": [r.flagged for r in rows],
            "iforest_flag": [_flag(r, "iforest") for r in rows],
            "lstm_ae_flag": [_flag(r, "lstm_ae") for r in rows],
            "top_features": [_reasons_text(r) for r in rows],
        }
    )
    df["timestamp"] = df["bar_start_ms"]
    df["model"] = scorer.version
    return dataset.add_session_open(df)


def _combined_score(scorer: Scorer, row: RowScore) -> float:
    cals = {"iforest": scorer.iforest.calibration, "lstm_ae": scorer.lstm.calibration}
    return max(float(cals[s.model].excess(np.array([s.score]))[0]) for s in row.model_scores)


def _flag(row: RowScore, model: str) -> bool:
    return any(s.flagged for s in row.model_scores if s.model == model)


def _reasons_text(row: RowScore) -> str:
    return "; ".join(
        f"{r.feature}={r.value:.3g} ({r.model} {r.contribution:+.3g})" for r in row.reasons
    )


def detector_metrics(
    df: pd.DataFrame, labels: pd.DataFrame, cooldown_minutes: int
) -> dict[str, EventMetrics]:
    """Event metrics for each model, the ensemble and both rule baselines."""
    flags = {
        "iforest": df["iforest_flag"].to_numpy(bool),
        "lstm_ae": df["lstm_ae_flag"].to_numpy(bool),
        "ensemble": df["is_anomaly"].to_numpy(bool),
        "prototype_rule": prototype_rule(df),
        "zscore_rule": zscore_rule(df) & df["warm"].to_numpy(bool),
    }
    return {name: evaluate_frame(df, f, labels, cooldown_minutes) for name, f in flags.items()}


def run(
    settings: Settings,
    bars_path: Path,
    labels_path: Path | None,
    out_dir: Path,
    model_uri: str | None = None,
    run_id: str | None = None,
) -> Path:
    """Score the CSV, write scores.csv (one row per bar) and report.md with plots."""
    from model_workers.backtest_report import write_report
    from model_workers.models.lstm_ae import configure_tensorflow

    configure_tensorflow()
    bars, refused = read_bars_csv(Path(bars_path))
    if not bars:
        raise ValueError(f"{bars_path}: no valid bars ({len(refused)} rows refused)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if refused:
        log.warning("%d rows refused; see %s", len(refused), out_dir / "refused_rows.csv")
        with open(out_dir / "refused_rows.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["line", "raw", "reason"])
            w.writerows((e.line, e.raw, e.reason) for e in refused)
    scorer = load_scorer(settings, model_uri, run_id)
    df = scored_frame(scorer, bars, settings)
    df[OUTPUT_COLUMNS].to_csv(out_dir / "scores.csv", index=False)
    labels = read_labels_csv(Path(labels_path)) if labels_path else None
    metrics = None
    if labels is not None:
        metrics = detector_metrics(df, labels, settings.model.cooldown_minutes)
        pd.DataFrame([m.row(n) for n, m in metrics.items()]).to_csv(
            out_dir / "metrics.csv", index=False
        )
    return write_report(out_dir, df, metrics, labels, scorer.version, len(refused))
