"""Isolation Forest on one feature vector: a scikit-learn pipeline (robust scaling, forest)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler

NAME = "iforest"


def train_iforest(x: np.ndarray, n_estimators: int = 200, max_samples: int = 512,
                  seed: int = 0) -> Pipeline:
    """Fit the pipeline on normal rows (float32, MODEL_FEATURES order)."""
    pipe = Pipeline([
        ("scale", RobustScaler()),
        ("iforest", IsolationForest(n_estimators=n_estimators, max_samples=max_samples,
                                    random_state=seed, n_jobs=1)),
    ])
    pipe.fit(x)
    return pipe


def iforest_scores(pipe: Pipeline, x: np.ndarray) -> np.ndarray:
    """Anomaly score per row, higher is more unusual (the negated sklearn score, in (0, 1])."""
    if len(x) == 0:
        return np.zeros(0)
    return -pipe.score_samples(x)
