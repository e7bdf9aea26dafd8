"""Feast feature services: what the models read, and everything (for the API and analysis)."""

from __future__ import annotations

from feast import FeatureService

from feature_repo.feature_views import CONTEXT_FIELDS, bar_features
from tickwatch.features import FEATURE_NAMES, MODEL_FEATURES

MODEL_SERVICE = "tickwatch_model"
ALL_SERVICE = "tickwatch_all"

# The scale-free subset one model serves every symbol with.
tickwatch_model = FeatureService(name=MODEL_SERVICE, features=[bar_features[list(MODEL_FEATURES)]])

# Every feature plus close, volume and warm.
tickwatch_all = FeatureService(
    name=ALL_SERVICE, features=[bar_features[[*FEATURE_NAMES, *CONTEXT_FIELDS]]]
)
