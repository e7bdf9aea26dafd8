"""The features stage's fast FeatureVector encoder and finite check agree with the schema."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from stream_processors.feast_push import FeatureRow
from stream_processors.outputs import all_finite, feature_vector_json
from tickwatch.features import FEATURE_NAMES
from tickwatch.schemas import FeatureVector, decode, encode

finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-9, max_value=1e12, allow_nan=False)


@given(
    feats=st.lists(finite, min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
    close=positive,
    volume=st.floats(min_value=0, max_value=1e15),
    warm=st.booleans(),
    start=st.integers(946_684_800_000, 4_102_444_800_000),
)
def test_fast_encoding_decodes_to_the_schema_record(
    feats: list[float], close: float, volume: float, warm: bool, start: int
) -> None:
    features = dict(zip(FEATURE_NAMES, feats, strict=True))
    row = FeatureRow("BRK.B", start, close, volume, features, warm)
    want = FeatureVector(
        symbol="BRK.B",
        bar_start_ms=start,
        close=close,
        volume=volume,
        features=features,
        warm=warm,
        computed_at_ms=123,
    )
    got = decode(FeatureVector, feature_vector_json(row, 123))
    assert got == want
    assert decode(FeatureVector, encode(want)) == got


@given(st.lists(st.floats(), max_size=30))
def test_all_finite_matches_isfinite_per_value(values: list[float]) -> None:
    assert all_finite(values) == all(math.isfinite(x) for x in values)


def test_all_finite_on_overflowing_sums() -> None:
    assert all_finite([1.7e308, 1.7e308])
    assert not all_finite([1.0, math.inf, -math.inf])
