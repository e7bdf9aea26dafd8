"""Feast feature services: what the models read, and everything (for the API and analysis)."""

from __future__ import annotations

from feast import FeatureService

from feature_repo.feature_views import CONTEXT_FIELDS, bar_features
from tickwatch.features import FEATURE_NAMES

MODEL_SERVICE = "tickwatch_model"
ALL_SERVICE = "tickwatch_all"

# What training reads: the models' scale-free subset and the detector's inputs (which include
# session and market context), i.e. every feature.
tickwatch_model = FeatureService(name=MODEL_SERVICE, features=[bar_features[list(FEATURE_NAMES)]])

# Every feature plus close, volume and warm.
tickwatch_all = FeatureService(
    name=ALL_SERVICE, features=[bar_features[[*FEATURE_NAMES, *CONTEXT_FIELDS]]]
)
