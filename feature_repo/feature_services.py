"""Feast feature services: what the models read, and everything (for the API and analysis)."""

from __future__ import annotations

from feast import FeatureService

from feature_repo.feature_views import CONTEXT_FIELDS, FEATURE_VIEW, bar_features
from tickwatch.features import FEATURE_NAMES

MODEL_SERVICE = "tickwatch_model"
ALL_SERVICE = "tickwatch_all"

# The models' scale-free subset and the detector's inputs (which include session and market
# context), i.e. every feature.
tickwatch_model = FeatureService(name=MODEL_SERVICE, features=[bar_features[list(FEATURE_NAMES)]])

# What training reads from the offline store: the service's features and the warm flag the
# features were computed with, as feature references (close and volume come with the bars).
TRAINING_REFS = tuple(f"{FEATURE_VIEW}:{name}" for name in (*FEATURE_NAMES, "warm"))

# Every feature plus close, volume and warm.
tickwatch_all = FeatureService(
    name=ALL_SERVICE, features=[bar_features[[*FEATURE_NAMES, *CONTEXT_FIELDS]]]
)
