"""Fit both models on a feature frame, calibrate thresholds, and evaluate on labelled validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from model_workers import dataset
from model_workers.ensemble import Calibration, calibrate, decide
from model_workers.evaluation import EventMetrics, alerts_from_flags, evaluate_alerts
from model_workers.models.iforest import iforest_scores, train_iforest
from model_workers.models.lstm_ae import (
    autoencoder_errors,
    autoencoder_scores,
    error_scale,
    train_autoencoder,
)

log = logging.getLogger(__name__)
VALIDATION_FRACTION = 0.3


@dataclass
class FitResult:
    """Trained models, their calibrations, and validation metrics per detector."""

    iforest: Any
    lstm: Any
    iforest_cal: Calibration
    lstm_cal: Calibration
    lstm_scale: np.ndarray
    history: list[dict[str, float]]
    metrics: dict[str, EventMetrics] = field(default_factory=dict)
    n_train: int = 0
    n_validation: int = 0


@dataclass(frozen=True)
class Scored:
    """Scores of a frame: forest, autoencoder (NaN without a full sequence), per-feature errors."""

    iforest: np.ndarray
    lstm: np.ndarray
    lstm_errors: np.ndarray


def score_frame(
    iforest: Any, lstm: Any, scale: np.ndarray, frame: pd.DataFrame, length: int
) -> Scored:
    """Score every row of a (symbol, time)-sorted frame with both models, one call each."""
    x = dataset.model_matrix(frame)
    windows, valid = dataset.sequences(frame, length)
    errors = np.full((len(frame), x.shape[1]), np.nan, dtype=np.float32)
    errors[valid] = autoencoder_errors(lstm, windows[valid])
    ae = np.full(len(frame), np.nan)
    ae[valid] = autoencoder_scores(errors[valid], scale)
    return Scored(iforest_scores(iforest, x), ae, errors)


def eligible(frame: pd.DataFrame) -> np.ndarray:
    """Rows a detector may flag: warm, and not the session's opening bar."""
    return frame["warm"].to_numpy(bool) & ~frame["session_open"].to_numpy(bool)


def fit_models(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    length: int,
    epochs: int,
    false_alarm_rate: float,
    cooldown_minutes: int,
    seed: int = 0,
) -> FitResult:
    """Train on the early days' normal rows, calibrate and evaluate on the last days."""
    train_rows, val_rows = dataset.split_by_day(frame, VALIDATION_FRACTION)
    disturbed = dataset.label_mask(frame, labels, dataset.LABEL_TAIL_MINUTES)
    normal = eligible(frame) & ~disturbed
    x = dataset.model_matrix(frame)
    windows, valid = dataset.sequences(frame, length)
    # a window is normal if none of its bars is disturbed or warming up
    normal_window = valid & _window_all(
        normal | frame["session_open"].to_numpy(bool), length, frame["symbol"].to_numpy()
    )
    fit_rows = train_rows & normal
    log.info("training iforest on %d normal rows", int(fit_rows.sum()))
    forest = train_iforest(x[fit_rows], seed=seed)
    ae_train = train_rows & normal_window
    ae_val = val_rows & normal_window
    log.info("training lstm_ae on %d windows of %d bars", int(ae_train.sum()), length)
    lstm, history = train_autoencoder(windows[ae_train], windows[ae_val][:4096], epochs, seed=seed)
    rng = np.random.default_rng(seed)
    sample = rng.choice(np.flatnonzero(ae_train), min(int(ae_train.sum()), 20_000), replace=False)
    scale = error_scale(autoencoder_errors(lstm, windows[np.sort(sample)]))
    val = frame[val_rows].reset_index(drop=True)
    scored = score_frame(forest, lstm, scale, val, length)
    val_normal = normal[val_rows]
    if_cal = calibrate(scored.iforest[val_normal], false_alarm_rate / 2)
    ae_cal = calibrate(scored.lstm[val_normal], false_alarm_rate / 2)
    result = FitResult(
        forest,
        lstm,
        if_cal,
        ae_cal,
        scale,
        history,
        n_train=int(fit_rows.sum()),
        n_validation=int(val_rows.sum()),
    )
    result.metrics = validation_metrics(val, scored, if_cal, ae_cal, labels, cooldown_minutes)
    return result


def validation_metrics(
    frame: pd.DataFrame,
    scored: Scored,
    if_cal: Calibration,
    ae_cal: Calibration,
    labels: pd.DataFrame,
    cooldown_minutes: int,
) -> dict[str, EventMetrics]:
    """Event metrics of the forest, the autoencoder and the ensemble on a scored frame."""
    d = decide(
        scored.iforest, scored.lstm, if_cal, ae_cal, eligible(frame), frame["log_return"].to_numpy()
    )
    return {
        name: evaluate_frame(frame, flags, labels, cooldown_minutes)
        for name, flags in (
            ("iforest", d.iforest_flag),
            ("lstm_ae", d.lstm_flag),
            ("ensemble", d.flagged),
        )
    }


def evaluate_frame(
    frame: pd.DataFrame, flags: np.ndarray, labels: pd.DataFrame, cooldown_minutes: int
) -> EventMetrics:
    """Alerts from flags (with cooldown) scored against the labels inside the frame's span."""
    sym, ts = frame["symbol"].to_numpy(), frame["bar_start_ms"].to_numpy()
    alerts = alerts_from_flags(sym, ts, flags, cooldown_minutes)
    inside = (
        labels[
            (labels["start"] >= ts.min())
            & (labels["end"] <= ts.max())
            & labels["symbol"].isin(set(sym))
        ]
        if len(labels)
        else labels
    )
    days = len(pd.unique(pd.Series(list(zip(sym, dataset.trading_day(ts), strict=True)))))
    return evaluate_alerts(frame, alerts, inside, days)


def _window_all(ok: np.ndarray, length: int, symbols: np.ndarray) -> np.ndarray:
    """True where the row and its `length - 1` predecessors of the same symbol are all ok."""
    bad = (~ok).astype(np.int64)
    csum = np.r_[0, np.cumsum(bad)]
    idx = np.arange(len(ok))
    lo = np.maximum(idx - length + 1, 0)
    same = symbols[lo] == symbols
    return same & (csum[idx + 1] - csum[lo] == 0)
