"""The registry's per-model calibration record (the decision itself: detection.detector)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    """A model's score threshold (for the false-alarm rate) and its median score on normal data."""

    threshold: float
    median: float
