"""The forest's fast scoring path gives sklearn's numbers, and extremes score higher."""

from __future__ import annotations

import numpy as np

from detection.models.iforest import iforest_scores, train_iforest


def test_fast_scores_equal_sklearn_score_samples():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 12)).astype(np.float32)
    pipe = train_iforest(x, n_estimators=50, max_samples=256)
    probe = np.vstack([x[:300], rng.standard_normal((5, 12)) * 8]).astype(np.float32)
    np.testing.assert_allclose(iforest_scores(pipe, probe), -pipe.score_samples(probe), rtol=1e-6)
    assert iforest_scores(pipe, probe[-5:]).min() > np.median(iforest_scores(pipe, x[:300]))
