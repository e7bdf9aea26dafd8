"""Why a bar was flagged: SHAP for the forest, per-feature reconstruction error for the LSTM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tickwatch.features import MODEL_FEATURES
from tickwatch.schemas import Reason


class ForestExplainer:
    """SHAP TreeExplainer over the pipeline's forest; contributions > 0 push towards anomalous."""

    def __init__(self, pipe: Any) -> None:
        import shap

        self.scale = pipe.named_steps["scale"]
        self.explainer = shap.TreeExplainer(pipe.named_steps["iforest"])

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(rows, features) SHAP values of the anomaly score (sign flipped: shorter paths > 0)."""
        if len(x) == 0:
            return np.zeros((0, len(MODEL_FEATURES)))
        values = self.explainer.shap_values(self.scale.transform(x), check_additivity=False)
        return -np.asarray(values)


def top_reasons(
    values: np.ndarray,
    contributions: np.ndarray,
    model: str,
    k: int,
    names: Sequence[str] = MODEL_FEATURES,
) -> list[Reason]:
    """The `k` features (`names[i]` for column i) contributing most to one row's anomaly score,
    largest first."""
    order = np.argsort(-contributions)[:k]
    return [
        Reason(
            feature=names[i],
            value=float(values[i]),
            contribution=float(contributions[i]),
            model=model,
        )
        for i in order
        if np.isfinite(contributions[i])
    ]
