"""Severity names and the registry's per-model calibration record (the decision itself:
model_workers.detector)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Calibration:
    """A model's score threshold (for the false-alarm rate) and its median score on normal data."""

    threshold: float
    median: float

    def excess(self, scores: np.ndarray) -> np.ndarray:
        """0 at the median, 1 at the threshold: comparable across models."""
        return (scores - self.median) / max(self.threshold - self.median, 1e-12)
