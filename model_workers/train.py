"""`tickwatch train`: fit both models, register them in MLflow, promote a better champion."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model_workers import dataset, registry
from model_workers.fit import FitResult, evaluate_frame, fit_models, score_frame, validation_metrics
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


def run(settings: Settings, epochs: int | None = None, seed: int = 0) -> TrainOutcome:
    """Load the stored history, train, register, and move the alias if the new pair is no worse."""
    from model_workers.training_data import load_training_frame

    frame, labels, source = load_training_frame(settings)
    return train_and_register(settings, frame, labels, source, epochs, seed)


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
        frame, labels, m.sequence_length, epochs, m.false_alarm_rate, m.cooldown_minutes, seed
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
                "false_alarm_rate": m.false_alarm_rate,
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
        if_version = registry.log_iforest(result.iforest, result.iforest_cal, settings, x)
        ae_version = registry.log_lstm(
            result.lstm, result.lstm_cal, result.lstm_scale, settings, windows[valid][:5]
        )
        outcome = promote_if_no_worse(
            settings, result, val, labels, active.info.run_id, if_version, ae_version
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
    val: pd.DataFrame,
    labels: pd.DataFrame,
    run_id: str,
    if_version: str,
    ae_version: str,
) -> TrainOutcome:
    """Promote the new pair unless the current champion scores a higher F1 on this validation."""
    new_f1 = result.metrics["ensemble"].f1
    current = registry.champion_versions(settings)
    champion_f1 = None
    if current is not None:
        forest, lstm = registry.load_pair(settings, current)
        scale = np.asarray(lstm.metadata["error_scale"], dtype=np.float32)
        scored = score_frame(forest.model, lstm.model, scale, val, settings.model.sequence_length)
        metrics = validation_metrics(
            val,
            scored,
            forest.calibration,
            lstm.calibration,
            labels,
            settings.model.cooldown_minutes,
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
