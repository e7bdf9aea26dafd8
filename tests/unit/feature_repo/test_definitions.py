"""The Feast definitions name each feature once, from tickwatch.features."""

from __future__ import annotations

from feature_repo.entities import symbol
from feature_repo.feature_services import tickwatch_all, tickwatch_model
from feature_repo.feature_views import CONTEXT_FIELDS, FEATURE_VIEW, bar_features
from feature_repo.sources import TIMESTAMP_FIELD, bar_features_push
from tickwatch.features import FEATURE_NAMES


def test_view_fields_come_from_feature_names() -> None:
    assert bar_features.name == FEATURE_VIEW == "bar_features"
    assert sorted(f.name for f in bar_features.features) == sorted(
        [*FEATURE_NAMES, *CONTEXT_FIELDS]
    )
    assert bar_features.entities == ["symbol"] and symbol.join_key == "symbol"
    assert bar_features.stream_source == bar_features_push
    assert bar_features_push.batch_source.timestamp_field == TIMESTAMP_FIELD == "event_timestamp"


def test_services() -> None:
    assert tickwatch_model.name == "tickwatch_model"
    assert [f.name for f in tickwatch_model.feature_view_projections[0].features] == list(
        FEATURE_NAMES
    )
    assert tickwatch_all.name == "tickwatch_all"
    assert [f.name for f in tickwatch_all.feature_view_projections[0].features] == [
        *FEATURE_NAMES,
        *CONTEXT_FIELDS,
    ]
