"""Wire schemas round-trip, refuse bad records naming the field, and ids are stable."""

from __future__ import annotations

import pytest

from tickwatch.schemas import (
    WIRE_MODELS,
    AnomalyEvent,
    DeadLetter,
    FeatureVector,
    MinuteBar,
    ModelScore,
    Reason,
    SchemaError,
    Trade,
    decode,
    encode,
    make_event_id,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, on a minute boundary


def bar(**kw: object) -> MinuteBar:
    base = dict(
        symbol="AAPL",
        start_ms=T0,
        end_ms=T0 + 60_000,
        open=10.0,
        high=11.0,
        low=9.5,
        close=10.5,
        volume=100.0,
        vwap=10.2,
        transactions=5,
    )
    base.update(kw)
    return MinuteBar(**base)  # type: ignore[arg-type]


def test_round_trip_every_model() -> None:
    ev = AnomalyEvent(
        event_id=make_event_id("AAPL", T0, "if:1|ae:1"),
        symbol="AAPL",
        bar_start_ms=T0,
        detected_at_ms=T0 + 61_000,
        severity="high",
        close=10.5,
        scores=[ModelScore(model="iforest", version="1", score=0.7, threshold=0.6, flagged=True)],
        reasons=[Reason(feature="volume_z_20", value=9.1, contribution=0.4, model="iforest")],
    )
    fv = FeatureVector(
        symbol="AAPL",
        bar_start_ms=T0,
        close=10.5,
        volume=100.0,
        features={"return_z": 1.5},
        warm=True,
    )
    for rec in (bar(), ev, fv, Trade(symbol="TSLA", price=250.0, size=10, timestamp_ms=T0)):
        assert decode(type(rec), encode(rec)) == rec


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"symbol":"AAPL","price":NaN,"size":1,"timestamp_ms":1767225600000}', "price"),
        ('{"symbol":"AAPL","price":-1,"size":1,"timestamp_ms":1767225600000}', "price"),
        ('{"symbol":"aapl","price":1,"size":1,"timestamp_ms":1767225600000}', "symbol"),
        ('{"symbol":"AAPL","price":1,"size":1,"timestamp_ms":1767225600}', "timestamp_ms"),
        ('{"symbol":"AAPL","price":1,"size":1,"timestamp_ms":1767225600000,"zz":1}', "zz"),
        ('{"symbol":"AAPL","price":"x","size":1,"timestamp_ms":1767225600000}', "price"),
        ("not json", "<root>"),
    ],
)
def test_bad_trades_are_refused_with_the_field_named(raw: str, field: str) -> None:
    with pytest.raises(SchemaError) as exc:
        decode(Trade, raw)
    assert f"Trade.{field}" in str(exc.value)


def test_bar_consistency_checks() -> None:
    with pytest.raises(SchemaError, match="minute boundary"):
        decode(MinuteBar, encode(bar()).replace(str(T0).encode(), str(T0 + 5).encode(), 1))
    with pytest.raises(ValueError, match="OHLC"):
        bar(high=10.0)
    with pytest.raises(ValueError):
        bar(volume=float("nan"))


def test_feature_vectors_refuse_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        FeatureVector(
            symbol="AAPL",
            bar_start_ms=T0,
            close=1.0,
            volume=1.0,
            features={"x": float("inf")},
            warm=False,
        )


def test_records_are_frozen() -> None:
    b = bar()
    with pytest.raises(ValueError):
        b.close = 1.0  # type: ignore[misc]


def test_event_id_is_deterministic_and_distinct() -> None:
    a = make_event_id("AAPL", T0, "v1")
    assert a == make_event_id("AAPL", T0, "v1")
    assert (
        len(
            {
                a,
                make_event_id("AAPL", T0 + 60_000, "v1"),
                make_event_id("MSFT", T0, "v1"),
                make_event_id("AAPL", T0, "v2"),
            }
        )
        == 4
    )


def test_every_wire_model_is_versioned_and_has_a_json_schema() -> None:
    for name, model in WIRE_MODELS.items():
        schema = model.model_json_schema()
        assert "v" in schema["properties"], name
        assert schema.get("additionalProperties") is False, name
    assert DeadLetter.model_fields["raw"].is_required()
