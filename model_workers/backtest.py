"""`tickwatch backtest`: score a CSV of bars as the stream does; report event-level metrics."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from detection.rules import prototype_rule, zscore_rule
from detection.scorer import RowScore, Scorer, vectors_from_bars
from model_workers import dataset
from model_workers.evaluation import EventMetrics
from model_workers.fit import evaluate_frame
from tickwatch.bar_files import is_iso_file, read_bars, read_labels_csv
from tickwatch.features import MODEL_FEATURES, opens_session, session_slot
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = [
    "symbol",
    "timestamp",
    "score",
    "is_anomaly",
    "threshold",
    "severity",
    "model",
    "top_features",
]


def load_scorer(settings: Settings, model_uri: str | None, run_id: str | None) -> Scorer:
    """The champion pair, a "FOREST_VERSION,LSTM_VERSION" pair, or the pair a training run made."""
    if model_uri:
        forest, lstm = (v.strip() for v in model_uri.split(","))
        return Scorer.from_versions(settings, (forest, lstm))
    if run_id:
        from detection.registry import use_tracking

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


def scored_frame(
    scorer: Scorer, bars: list, settings: Settings, warm_bars: list | None = None
) -> pd.DataFrame:
    """One row per bar of `bars`: features, each member's flag, the score, flag and reasons.

    `warm_bars` (earlier history, e.g. the training file) go through the same state first and
    are not reported: the features, sequences and online thresholds start where they left off,
    as a stream that ran over them would. No look-ahead: each bar sees only bars before it.
    """
    warm_bars = warm_bars or []
    last_warm = max((int(b.start_ms) for b in warm_bars), default=-1)
    vectors = vectors_from_bars(
        [*warm_bars, *(b for b in bars if int(b.start_ms) > last_warm)],
        settings.features.market_symbol,
        settings.features.beta_window,
    )
    rows = scorer.score(vectors)
    keep = [i for i, v in enumerate(vectors) if v.bar_start_ms > last_warm]
    vectors = [vectors[i] for i in keep]
    rows = [rows[i] for i in keep]
    df = pd.DataFrame(
        {
            "symbol": [v.symbol for v in vectors],
            "bar_start_ms": [v.bar_start_ms for v in vectors],
            "close": [v.close for v in vectors],
            "volume": [v.volume for v in vectors],
            "warm": [v.warm for v in vectors],
            "log_return": [v.features["log_return"] for v in vectors],
            **{k: [v.features[k] for v in vectors] for k in MODEL_FEATURES},
            "session_open": [opens_session(v.features) for v in vectors],
            "score": [r.best for r in rows],
            "threshold": [r.threshold for r in rows],
            "is_anomaly": [r.flagged for r in rows],
            "severity": [r.severity or "" for r in rows],
            "iforest_flag": [_flag(r, "iforest") for r in rows],
            "lstm_ae_flag": [_flag(r, "lstm_ae") for r in rows],
            "evidence_flag": [_flag(r, "evidence") for r in rows],
            "top_features": [_reasons_text(r) for r in rows],
        }
    )
    df["model"] = scorer.version
    return df.sort_values(["symbol", "bar_start_ms"], kind="stable").reset_index(drop=True)


def _flag(row: RowScore, model: str) -> bool:
    return any(s.flagged for s in row.model_scores if s.model == model)


def _reasons_text(row: RowScore) -> str:
    return "; ".join(
        f"{r.feature}={r.value:.3g} ({r.model} {r.contribution:+.3g})" for r in row.reasons
    )


def detector_metrics(
    df: pd.DataFrame, labels: pd.DataFrame, cooldown_minutes: int
) -> dict[str, EventMetrics]:
    """Event metrics for each member, the ensemble and the rule baselines (masked like the
    models: warm bars, not a session's opening bar)."""
    mask = df["warm"].to_numpy(bool) & ~df["session_open"].to_numpy(bool)
    flags = {
        "iforest": df["iforest_flag"].to_numpy(bool),
        "lstm_ae": df["lstm_ae_flag"].to_numpy(bool),
        "evidence": df["evidence_flag"].to_numpy(bool),
        "ensemble": df["is_anomaly"].to_numpy(bool),
        "prototype_rule": prototype_rule(df) & mask,
        "zscore_rule": zscore_rule(df) & mask,
    }
    return {name: evaluate_frame(df, f, labels, cooldown_minutes) for name, f in flags.items()}


def split_fit_days(bars: list, days: int) -> tuple[list, list]:
    """(bars of the first `days` trading days, the rest). A partial session (fewer than half
    the bars of a median one, as a file cut mid-session starts) is fitted on with the next
    and does not count as one of the `days`."""
    day_of = {int(b.start_ms): session_slot(int(b.start_ms))[0] for b in bars}
    per_day: dict[int, int] = {}
    for b in bars:
        d = day_of[int(b.start_ms)]
        per_day[d] = per_day.get(d, 0) + 1
    unique = sorted(per_day)
    full = [d for d in unique if per_day[d] >= 0.5 * float(np.median(list(per_day.values())))]
    if len(full) <= days:
        raise ValueError(f"--fit-days {days}: the file has only {len(full)} full trading days")
    cut = full[days]
    return (
        [b for b in bars if day_of[int(b.start_ms)] < cut],
        [b for b in bars if day_of[int(b.start_ms)] >= cut],
    )


def fit_scorer(
    settings: Settings, bars: list, labels: pd.DataFrame | None, epochs: int | None = None
) -> Scorer:
    """Fit both models and the detector on `bars` in memory (the registry is not touched)."""
    from detection.models.lstm_ae import configure_tensorflow
    from model_workers.fit import fit_models

    configure_tensorflow()
    m = settings.model
    frame = dataset.frame_from_bars(
        bars, settings.features.market_symbol, settings.features.beta_window
    )
    lab = labels if labels is not None else pd.DataFrame(columns=["symbol", "start", "end", "type"])
    result = fit_models(
        frame,
        lab,
        m.sequence_length,
        epochs or m.epochs,
        m,
        m.cooldown_minutes,
        market_symbol=settings.features.market_symbol,
    )
    return result.scorer(m.sequence_length, m.top_features)


def write_scores(df: pd.DataFrame, path: Path, iso: bool) -> None:
    """scores.csv: one row per bar, timestamps in the input's own format."""
    out = df.copy()
    ts = pd.to_datetime(out["bar_start_ms"], unit="ms", utc=True)
    out["timestamp"] = ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ") if iso else out["bar_start_ms"]
    out[OUTPUT_COLUMNS].to_csv(path, index=False)


def _read(path: Path, out_dir: Path, name: str) -> tuple[list, bool]:
    bars, refused = read_bars(Path(path))
    if refused:
        log.warning("%d rows refused; see %s", len(refused), out_dir / f"{name}refused_rows.csv")
        with open(out_dir / f"{name}refused_rows.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["line", "raw", "reason"])
            w.writerows((e.line, e.raw, e.reason) for e in refused)
    if not bars:
        raise ValueError(f"{path}: no valid bars ({len(refused)} rows refused)")
    return bars, is_iso_file(Path(path))


def run(
    settings: Settings,
    bars_path: Path,
    labels_path: Path | None,
    out_dir: Path,
    model_uri: str | None = None,
    run_id: str | None = None,
    train_bars: Path | None = None,
    train_labels: Path | None = None,
    fit_days: int | None = None,
    epochs: int | None = None,
) -> Path:
    """Score the file, write scores.csv (one row per bar) and report.md with plots.

    Models: fitted on `train_bars` (or the first `fit_days` days of the file, which are then
    not scored) without touching the registry, else the registered ones.
    """
    from detection.models.lstm_ae import configure_tensorflow
    from model_workers.backtest_report import write_report

    configure_tensorflow()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bars, iso = _read(bars_path, out_dir, "")
    labels = read_labels_csv(Path(labels_path)) if labels_path else None
    warm: list = []
    if train_bars is not None or fit_days:
        if train_bars is not None:
            warm, _ = _read(train_bars, out_dir, "train_")
            fit_labels = read_labels_csv(Path(train_labels)) if train_labels else None
        else:
            warm, bars = split_fit_days(bars, int(fit_days or 0))
            fit_labels = labels
        scorer = fit_scorer(settings, warm, fit_labels, epochs)
    else:
        scorer = load_scorer(settings, model_uri, run_id)
    df = scored_frame(scorer, bars, settings, warm)
    write_scores(df, out_dir / "scores.csv", iso)
    metrics = None
    if labels is not None:
        metrics = detector_metrics(df, labels, settings.model.cooldown_minutes)
        pd.DataFrame([m.row(n) for n, m in metrics.items()]).to_csv(
            out_dir / "metrics.csv", index=False
        )
    df["timestamp"] = df["bar_start_ms"]
    return write_report(out_dir, df, metrics, labels, scorer.version, 0)
