"""One decision per bar from both models and the rules: thresholds, flags, severity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_workers.rules import BIG_MOVE_LOG

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_EDGES = (1.5, 2.5, 4.0)  # excess over the threshold, in threshold units above the median


@dataclass(frozen=True)
class Calibration:
    """A model's score threshold (for the false-alarm rate) and its median score on normal data."""

    threshold: float
    median: float

    def excess(self, scores: np.ndarray) -> np.ndarray:
        """0 at the median, 1 at the threshold: comparable across models."""
        return (scores - self.median) / max(self.threshold - self.median, 1e-12)


def calibrate(normal_scores: np.ndarray, false_alarm_rate: float) -> Calibration:
    """The threshold that `false_alarm_rate` of normal validation rows exceed."""
    s = normal_scores[np.isfinite(normal_scores)]
    return Calibration(float(np.quantile(s, 1 - false_alarm_rate)), float(np.median(s)))


@dataclass(frozen=True)
class Decision:
    """Vectorized verdicts: per-model flags, the combined flag and a severity index (0-3)."""

    iforest_flag: np.ndarray
    lstm_flag: np.ndarray
    big_move: np.ndarray
    flagged: np.ndarray
    severity: np.ndarray


def decide(
    if_scores: np.ndarray,
    ae_scores: np.ndarray,
    if_cal: Calibration,
    ae_cal: Calibration,
    eligible: np.ndarray,
    log_return: np.ndarray,
) -> Decision:
    """Flag a bar when the autoencoder crosses its threshold or it moved over 5%; rank severity.

    The forest decides only where the symbol has no full sequence yet (`ae_scores` NaN): on the
    labelled validation data its extra flags were almost all false alarms (docs/models.md). Its
    agreement raises the severity, and its SHAP values explain every flagged bar. `eligible` is
    warm and not the session's opening bar (which carries the overnight gap).
    """
    if_flag = eligible & (if_scores >= if_cal.threshold)
    ae_ok = np.isfinite(ae_scores)
    ae_flag = eligible & ae_ok & (np.where(ae_ok, ae_scores, -np.inf) >= ae_cal.threshold)
    big_move = eligible & (np.abs(log_return) > BIG_MOVE_LOG)
    flagged = ae_flag | (if_flag & ~ae_ok) | big_move
    excess = np.maximum(
        if_cal.excess(if_scores), np.where(ae_ok, ae_cal.excess(np.nan_to_num(ae_scores)), 0.0)
    )
    level = np.searchsorted(SEVERITY_EDGES, excess, side="right")
    level = level + (if_flag & ae_flag) + big_move
    level = np.where(big_move, np.maximum(level, 2), level)
    return Decision(if_flag, ae_flag, big_move, flagged, np.clip(level, 0, 3))
