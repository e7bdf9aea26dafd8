"""`tickwatch train`: fit both models, register them in MLflow, promote a better champion."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detection import registry
from detection.models.lstm_ae import configure_tensorflow
from detection.rules import prototype_rule, zscore_rule
from model_workers import dataset
from model_workers.fit import (
    VALIDATION_FRACTION,
    FitResult,
    evaluate_frame,
    fit_models,
    validation_metrics,
)
from model_workers.validation import InjectedValidation, injected_validation
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
    gate: str = "injected F1"  # what decided: "labelled F1" with labels, else "injected F1"


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
        return train_and_register(
            settings, frame, lab, f"file:{Path(bars).name}", epochs, seed, found
        )
    from model_workers.training_data import load_training_frame

    frame, lab, source, stored = load_training_frame(settings)
    return train_and_register(settings, frame, lab, source, epochs, seed, stored)


def train_and_register(
    settings: Settings,
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    source: str,
    epochs: int | None = None,
    seed: int = 0,
    bars: list | None = None,
) -> TrainOutcome:
    """Fit on `frame`, log everything to one MLflow run, register both models, gate the alias.

    `bars` (the frame's bars) give the injected validation: anomalies of every kind in a copy
    of the validation days (model_workers.validation), which decides the gate without labels."""
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
    _, val_rows = dataset.split_by_day(frame, VALIDATION_FRACTION)
    val = frame[val_rows].reset_index(drop=True)
    held_out = _held_out(bars, frame, val_rows)
    injected = (
        injected_validation(result.scorer(m.sequence_length), *held_out, settings)
        if held_out
        else None
    )
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
        if injected is not None:
            mlflow.log_metrics({f"val_{k}": v for k, v in injected.row().items()})
            log.info(
                "injected validation: F1 %.3f, recall %s; %.2f alerts per symbol-session on "
                "the untouched days (budget %.2f)",
                injected.injected.f1,
                {k: round(v, 2) for k, v in injected.injected.recall_by_type.items()},
                injected.alerts_per_session,
                m.alerts_per_day,
            )
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
            settings,
            result,
            frame,
            labels,
            active.info.run_id,
            if_version,
            ae_version,
            injected,
            held_out,
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
    injected: InjectedValidation | None = None,
    held_out: tuple[list, list] | None = None,
) -> TrainOutcome:
    """Promote the new pair unless the current champion does better on this history.

    With labels, on their F1 over the validation days; without, on the F1 against anomalies
    injected into a copy of those days (both pairs scored on the same copy): an F1 against no
    labels (0 against 0) never decides. Without either, the new pair is promoted.
    """
    labelled = labels is not None and len(labels) > 0
    gate = "labelled F1" if labelled else "injected F1"
    if labelled:
        new_f1 = result.metrics["ensemble"].f1
    else:
        new_f1 = injected.injected.f1 if injected is not None else float("nan")
    current = registry.champion_pair(settings)
    champion_f1 = None
    if current is not None and (labelled or (injected is not None and held_out)):
        from detection.scorer import Scorer

        try:
            champion = Scorer.from_versions(settings, current)
        except (ValueError, KeyError) as exc:  # fitted by older code: cannot score this data
            log.info("champion %s cannot be compared (%s): replacing it", current, exc)
        else:
            if labelled:
                _, val_rows = dataset.split_by_day(frame, VALIDATION_FRACTION)
                metrics = validation_metrics(
                    champion, frame, val_rows, labels, settings.model.cooldown_minutes
                )
                champion_f1 = metrics["ensemble"].f1
            else:
                assert held_out is not None
                champion_f1 = injected_validation(champion, *held_out, settings).injected.f1
    promoted = champion_f1 is None or new_f1 >= champion_f1
    if promoted:
        registry.set_champion(settings, if_version, ae_version)
    else:
        log.info("keeping champion %s (%s %.3f > new %.3f)", current, gate, champion_f1, new_f1)
    import mlflow

    mlflow.set_tag("gate", gate)
    if champion_f1 is not None:
        mlflow.log_metric("champion_f1_before", champion_f1)
    return TrainOutcome(run_id, if_version, ae_version, new_f1, champion_f1, promoted, gate)


def _held_out(
    bars: list | None, frame: pd.DataFrame, val_rows: np.ndarray
) -> tuple[list, list] | None:
    """(the bars before the validation days, the validation days' bars) of the fit's split."""
    if not bars or not val_rows.any():
        return None
    cut = int(frame["bar_start_ms"].to_numpy()[val_rows].min())
    warm = [b for b in bars if int(b.start_ms) < cut]
    validation = [b for b in bars if int(b.start_ms) >= cut]
    return (warm, validation) if warm and validation else None
