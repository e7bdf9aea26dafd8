"""Fit both models on a feature frame, calibrate thresholds, and evaluate on labelled validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detection.detector import Detector
from detection.ensemble import Calibration
from detection.models.iforest import NAME as IFOREST
from detection.models.iforest import iforest_scores, train_iforest
from detection.models.lstm_ae import NAME as LSTM
from detection.models.lstm_ae import (
    autoencoder_errors,
    autoencoder_scores,
    error_scale,
    train_autoencoder,
)
from detection.registry import LoadedModel
from detection.scorer import Scorer
from model_workers import dataset
from model_workers.evaluation import EventMetrics, alerts_from_flags, evaluate_alerts
from tickwatch.schemas import MINUTE_MS
from tickwatch.settings import MARKET_SYMBOL, TOP_FEATURES

log = logging.getLogger(__name__)
VALIDATION_FRACTION = 0.3


@dataclass
class FitResult:
    """Trained models, the fitted detector, and validation metrics per detector."""

    iforest: Any
    lstm: Any
    iforest_cal: Calibration
    lstm_cal: Calibration
    lstm_scale: np.ndarray
    history: list[dict[str, float]]
    detector: Detector
    metrics: dict[str, EventMetrics] = field(default_factory=dict)
    n_train: int = 0
    n_validation: int = 0

    def scorer(
        self, length: int, top_k: int = TOP_FEATURES, versions: tuple[str, str] = ("new", "new")
    ) -> Scorer:
        """A Scorer over these in-memory models (the registry is not touched)."""
        forest = LoadedModel(IFOREST, versions[0], self.iforest, self.iforest_cal, {})
        lstm = LoadedModel(
            LSTM,
            versions[1],
            self.lstm,
            self.lstm_cal,
            {"sequence_length": length, "error_scale": [float(v) for v in self.lstm_scale]},
        )
        return Scorer(forest, lstm, top_k, self.detector)


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


def eligible(frame: pd.DataFrame, skip_open: bool = True) -> np.ndarray:
    """Rows a detector may flag: warm, and (intraday bars) not the session's opening bar."""
    warm = frame["warm"].to_numpy(bool)
    return warm & ~frame["session_open"].to_numpy(bool) if skip_open else warm


def intraday(frame: pd.DataFrame) -> bool:
    """True for bars with many per session (their first bar carries the overnight gap)."""
    from detection.detector import many_bars_per_session

    ts = frame["bar_start_ms"].to_numpy()
    return many_bars_per_session(frame["symbol"].to_numpy(), dataset.trading_day(ts))


def fit_models(
    frame: pd.DataFrame,
    labels: pd.DataFrame,
    length: int,
    epochs: int,
    settings_model: Any,
    cooldown_minutes: int,
    seed: int = 0,
    market_symbol: str = MARKET_SYMBOL,
) -> FitResult:
    """Train on the early days' normal rows, fit the detector on the history, evaluate on the
    last days as the stream would score them (the earlier days warm its state)."""
    train_rows, val_rows = dataset.split_by_day(frame, VALIDATION_FRACTION)
    disturbed = dataset.label_mask(frame, labels, dataset.LABEL_TAIL_MINUTES)
    normal = eligible(frame, intraday(frame)) & ~disturbed
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
    scored = score_frame(forest, lstm, scale, frame, length)
    detector = fit_frame_detector(
        frame,
        np.column_stack([scored.iforest, scored.lstm]),
        ~disturbed,
        settings_model,
        cooldown_minutes,
        market_symbol,
    )
    log.info(
        "detector: pooled threshold %.2f for %.2f alerts per symbol-session (%s)",
        detector.threshold,
        detector.budget,
        "intraday sessions" if detector.skip_open else "one bar per session",
    )
    placeholder = Calibration(detector.threshold, 0.0)
    result = FitResult(
        forest,
        lstm,
        placeholder,
        placeholder,
        scale,
        history,
        detector,
        n_train=int(fit_rows.sum()),
        n_validation=int(val_rows.sum()),
    )
    scorer = result.scorer(length)
    result.metrics = validation_metrics(scorer, frame, val_rows, labels, cooldown_minutes)
    return result


def fit_frame_detector(
    frame: pd.DataFrame,
    model_scores: np.ndarray,
    clean: np.ndarray,
    m: Any,
    cooldown_minutes: int,
    market_symbol: str,
) -> Detector:
    """The detector fitted on a (symbol, time)-sorted feature frame (`clean`: not labelled)."""
    from detection.detector import WINDOW, fit_detector
    from tickwatch.features import active_calendar

    wins = dataset.input_windows(frame, WINDOW)
    ts = frame["bar_start_ms"].to_numpy()
    days, minutes = dataset.trading_day(ts), dataset.minute_of_day(ts)
    symbols = frame["symbol"].to_numpy()
    ok = eligible(frame, intraday(frame))
    return fit_detector(
        wins,
        symbols,
        ts,
        days,
        minutes,
        model_scores,
        ok & clean,
        ok,
        budget=m.alerts_per_day,
        cooldown_ms=cooldown_minutes * MINUTE_MS,
        sessions=m.threshold_sessions,
        market_symbol=market_symbol,
        calendar=active_calendar().name,
    )


def validation_metrics(
    scorer: Scorer,
    frame: pd.DataFrame,
    val_rows: np.ndarray,
    labels: pd.DataFrame,
    cooldown_minutes: int,
) -> dict[str, EventMetrics]:
    """Event metrics of each member and the ensemble on the validation rows, scored as the
    stream scores them (every earlier row warms the state first)."""
    rows = scorer.score(dataset.vectors_from_frame(frame))
    order = dataset.stream_order(frame)
    flags = {
        name: np.zeros(len(frame), bool) for name in ("iforest", "lstm_ae", "evidence", "ensemble")
    }
    for i, r in zip(order, rows, strict=True):
        flags["ensemble"][i] = r.flagged
        for s in r.model_scores:
            flags[s.model][i] = s.flagged
    val = frame[val_rows].reset_index(drop=True)
    return {
        name: evaluate_frame(val, f[val_rows], labels, cooldown_minutes)
        for name, f in flags.items()
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
