"""Pure parts of the anomaly queries: cursors, filters, time parameters, page assembly, errors."""

from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from api.errors import describe_validation
from api.queries import AnomalyQuery, Cursor, CursorError, matches, page_json
from api.routes.anomalies import parse_time

HEX = st.text("0123456789abcdef", min_size=32, max_size=32)


@given(st.integers(0, 4_102_444_800_000), HEX)
def test_cursor_round_trips(ms: int, event_id: str) -> None:
    cursor = Cursor(ms, event_id)
    assert Cursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize("token", ["", "abc", "!!!!", "MTIz", "MTIzOnh5eg", "bm90Om51bWJlcg"])
def test_foreign_cursors_are_refused(token: str) -> None:
    with pytest.raises(CursorError):
        Cursor.decode(token)


def test_cursor_order_is_newest_first_with_ids_breaking_ties() -> None:
    a, b = Cursor(2, "a" * 32), Cursor(2, "b" * 32)
    assert Cursor(1, "f" * 32) < a < b < Cursor(3, "0" * 32)


def record(severity: str, flagged_by: str) -> dict:
    return {
        "severity": severity,
        "scores": [
            {"model": "iforest", "flagged": flagged_by == "iforest"},
            {"model": "lstm_ae", "flagged": flagged_by == "lstm_ae"},
        ],
    }


def test_severity_and_model_filters() -> None:
    high = record("high", "lstm_ae")
    assert matches(high, AnomalyQuery(min_severity="medium"))
    assert matches(high, AnomalyQuery(min_severity="high"))
    assert not matches(high, AnomalyQuery(min_severity="critical"))
    assert matches(high, AnomalyQuery(model="lstm_ae"))
    assert not matches(high, AnomalyQuery(model="iforest"))  # scored it, did not flag it
    assert not matches(high, AnomalyQuery(model="nope"))


def test_cache_key_differs_for_every_field() -> None:
    base = AnomalyQuery(
        symbol="AAPL",
        start_ms=1,
        end_ms=2,
        min_severity="low",
        model="m",
        limit=10,
        cursor=Cursor(5, "a" * 32),
    )
    variants = [
        AnomalyQuery(**{**base.__dict__, field: value})
        for field, value in [
            ("symbol", "MSFT"),
            ("start_ms", 0),
            ("end_ms", 3),
            ("min_severity", "high"),
            ("model", "x"),
            ("limit", 11),
            ("cursor", Cursor(5, "b" * 32)),
        ]
    ]
    keys = {v.cache_key() for v in variants} | {base.cache_key()}
    assert len(keys) == len(variants) + 1


def test_page_json_is_valid_and_keeps_records_verbatim() -> None:
    records = [b'{"event_id":"x","close":1.5}', b'{"event_id":"y"}']
    page = json.loads(page_json(records, Cursor(7, "c" * 32)))
    assert page["items"] == [{"event_id": "x", "close": 1.5}, {"event_id": "y"}]
    assert Cursor.decode(page["next_cursor"]) == Cursor(7, "c" * 32)
    assert json.loads(page_json([], None)) == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1767225600000", 1_767_225_600_000),
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600_000),
        ("2026-01-01T00:00:00", 1_767_225_600_000),  # naive: UTC
        ("2026-01-01", 1_767_225_600_000),
    ],
)
def test_time_parameters_accept_ms_and_iso(text: str, ms: int) -> None:
    assert parse_time("from", text) == ms


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "-5", "99999999999999999"])
def test_bad_time_parameters_name_the_parameter(text: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_time("to", text)
    errors, message = describe_validation(info.value)
    assert errors[0]["loc"] == ["query", "to"] and "query parameter 'to'" in message
