"""`tickwatch train`: fit both models, register them in MLflow, promote a better champion."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model_workers import dataset, registry
from model_workers.fit import FitResult, evaluate_frame, fit_models, validation_metrics
from model_workers.models.lstm_ae import configure_tensorflow
from model_workers.rules import prototype_rule, zscore_rule
from tickwatch.features import MODEL_FEATURES
from tickwatch.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run registered and whether it became the champion."""

    run_id: str
    iforest_version: str
    lstm_version: str
    f1: float
    champion_f1: float | None
    promoted: bool


def run(
    settings: Settings,
    epochs: int | None = None,
    seed: int = 0,
    bars: Path | None = None,
    labels: Path | None = None,
) -> TrainOutcome:
    """Load the stored history (or the `bars` file), train, register, and move the alias if the
    new pair is no worse."""
    if bars is not None:
        from tickwatch.bar_files import read_bars, read_labels_csv

        found, refused = read_bars(Path(bars))
        if refused:
            log.warning(
                "%s: %d rows refused (first: line %d, %s)",
                bars,
                len(refused),
                refused[0].line,
                refused[0].reason,
            )
        if not found:
            raise ValueError(f"{bars}: no valid bars")
        frame = dataset.frame_from_bars(
            found, settings.features.market_symbol, settings.features.beta_window
        )
        lab = (
            read_labels_csv(Path(labels))
            if labels
            else pd.DataFrame(columns=["symbol", "start", "end", "type"])
        )
        return train_and_register(settings, frame, lab, f"file:{Path(bars).name}", epochs, seed)
    from model_workers.training_data import load_training_frame

    frame, lab, source = load_training_frame(settings)
    return train_and_register(settings, frame, lab, source, epochs, seed)


def train_and_register(
    settings: Settings,
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    source: str,
    epochs: int | None = None,
    seed: int = 0,
) -> TrainOutcome:
    """Fit on `frame`, log everything to one MLflow run, register both models, gate the alias."""
    import mlflow

    configure_tensorflow()
    registry.use_tracking(settings)
    m = settings.model
    epochs = epochs or m.epochs
    t0 = time.monotonic()
    result = fit_models(
        frame,
        labels,
        m.sequence_length,
        epochs,
        m,
        m.cooldown_minutes,
        seed,
        settings.features.market_symbol,
    )
    _, val_rows = dataset.split_by_day(frame, 0.3)
    val = frame[val_rows].reset_index(drop=True)
    with mlflow.start_run(run_name=f"train-{source}") as active:
        mlflow.log_params(
            {
                "source": source,
                "rows": len(frame),
                "train_rows": result.n_train,
                "validation_rows": result.n_validation,
                "sequence_length": m.sequence_length,
                "epochs": epochs,
                "alerts_per_day": m.alerts_per_day,
                "threshold_sessions": m.threshold_sessions,
                "pooled_threshold": result.detector.threshold,
                "cooldown_minutes": m.cooldown_minutes,
                "symbols": frame["symbol"].nunique(),
                "iforest_n_estimators": 100,
                "iforest_max_samples": 256,
                "lstm_units": 32,
                "seed": seed,
                "labels": len(labels),
            }
        )
        mlflow.log_dict({"features": list(MODEL_FEATURES)}, "features.json")
        for step, h in enumerate(result.history):
            mlflow.log_metrics({"lstm_loss": h["loss"], "lstm_val_loss": h["val_loss"]}, step=step)
        _log_event_metrics(result, val, labels, settings)
        mlflow.log_metric("train_seconds", time.monotonic() - t0)
        x = dataset.model_matrix(val)[:5]
        windows, valid = dataset.sequences(val, m.sequence_length)
        mlflow.log_dict(result.detector.to_dict(), "detector.json")
        if_version = registry.log_iforest(
            result.iforest, result.iforest_cal, settings, x, result.detector.to_dict()
        )
        ae_version = registry.log_lstm(
            result.lstm, result.lstm_cal, result.lstm_scale, settings, windows[valid][:5]
        )
        outcome = promote_if_no_worse(
            settings, result, frame, labels, active.info.run_id, if_version, ae_version
        )
        mlflow.set_tag("promoted", str(outcome.promoted).lower())
    return outcome


def _log_event_metrics(
    result: FitResult, val: pd.DataFrame, labels: pd.DataFrame, settings: Settings
) -> None:
    """Validation metrics of each model, the ensemble and both baselines, logged and printed."""
    import mlflow

    rows = {
        **result.metrics,
        "prototype_rule": evaluate_frame(
            val, prototype_rule(val), labels, settings.model.cooldown_minutes
        ),
        "zscore_rule": evaluate_frame(
            val, zscore_rule(val) & val["warm"].to_numpy(), labels, settings.model.cooldown_minutes
        ),
    }
    for name, em in rows.items():
        flat = {
            f"val_{name}_{k}": float(v)
            for k, v in em.row(name).items()
            if k != "detector" and isinstance(v, int | float) and np.isfinite(v)
        }
        mlflow.log_metrics(flat)
        log.info(
            "validation %-15s F1 %.3f precision %.3f recall %.3f false alarms/symbol-day %.2f",
            name,
            em.f1,
            em.precision,
            em.recall,
            em.false_alarms_per_symbol_day,
        )


def promote_if_no_worse(
    settings: Settings,
    result: FitResult,
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    run_id: str,
    if_version: str,
    ae_version: str,
) -> TrainOutcome:
    """Promote the new pair unless the current champion scores a higher F1 on this validation.

    Without labels there is nothing to compare on: the new pair is promoted (the run says so).
    """
    new_f1 = result.metrics["ensemble"].f1
    current = registry.champion_versions(settings)
    champion_f1 = None
    if current is not None and labels is not None and len(labels):
        from model_workers.scorer import Scorer

        try:
            champion = Scorer.from_versions(settings, current)
        except (ValueError, KeyError) as exc:  # fitted by older code: cannot score this data
            log.info("champion %s cannot be compared (%s): replacing it", current, exc)
        else:
            _, val_rows = dataset.split_by_day(frame, 0.3)
            metrics = validation_metrics(
                champion, frame, val_rows, labels, settings.model.cooldown_minutes
            )
            champion_f1 = metrics["ensemble"].f1
    promoted = champion_f1 is None or new_f1 >= champion_f1
    if promoted:
        registry.set_champion(settings, if_version, ae_version)
    else:
        log.info("keeping champion %s (F1 %.3f > new %.3f)", current, champion_f1, new_f1)
    import mlflow

    if champion_f1 is not None:
        mlflow.log_metric("champion_f1_before", champion_f1)
    return TrainOutcome(run_id, if_version, ae_version, new_f1, champion_f1, promoted)
