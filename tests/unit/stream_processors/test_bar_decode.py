"""The fast bar decoder accepts exactly what the MinuteBar schema accepts, with the same values."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processors.bar_decode import decode_bar
from tickwatch.features import Bar
from tickwatch.schemas import MinuteBar, SchemaError, decode

START = 1_764_000_000_000 - 1_764_000_000_000 % 60_000
GOOD = {
    "v": 1,
    "symbol": "AAPL",
    "start_ms": START,
    "end_ms": START + 59_999,
    "open": 10.0,
    "high": 11.0,
    "low": 9.5,
    "close": 10.5,
    "volume": 1200.0,
    "vwap": 10.2,
    "transactions": 17,
    "source": "replay",
}
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.text(max_size=5),
    st.sampled_from(["AAPL", "aapl", "BRK.B", "AAPL\n", "", "polygon", "csv", START, 60_000.0]),
    st.lists(st.integers(), max_size=2),
)


def _pydantic(data: bytes) -> Bar | str:
    try:
        r = decode(MinuteBar, data)
    except SchemaError:
        return "refused"
    return Bar(
        r.symbol, r.start_ms, r.open, r.high, r.low, r.close, r.volume, r.vwap, r.transactions
    )


def _fast(data: bytes) -> Bar | str:
    try:
        return decode_bar(data)
    except SchemaError:
        return "refused"


@settings(max_examples=600)
@given(
    changes=st.dictionaries(st.sampled_from([*GOOD, "extra"]), odd_values, max_size=3),
    drop=st.lists(st.sampled_from(list(GOOD)), max_size=2),
)
def test_fast_and_schema_paths_agree_on_mutated_records(changes: dict, drop: list) -> None:
    record = {k: v for k, v in {**GOOD, **changes}.items() if k not in drop}
    try:
        data = json.dumps(record).encode()
    except ValueError:
        return
    fast, slow = _fast(data), _pydantic(data)
    assert fast == slow
    if isinstance(fast, Bar):  # same types too: ints stay ints, floats floats
        assert [type(x) for x in fast] == [type(x) for x in slow]


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b"null", b'{"symbol": "AAPL"}', b"\xff\xfe"])
def test_garbage_is_refused_with_the_schema_reason(raw: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_bar(raw)


def test_nan_and_infinity_are_refused() -> None:
    for field in ("close", "volume"):
        for bad in (b"NaN", b"Infinity", b"1e999"):
            data = (
                json.dumps({**GOOD, field: 0})
                .encode()
                .replace(f'"{field}": 0'.encode(), f'"{field}": '.encode() + bad)
            )
            with pytest.raises(SchemaError):
                decode_bar(data)
    assert math.isfinite(decode_bar(json.dumps(GOOD).encode()).close)
