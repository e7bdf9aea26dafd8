"""Polygon frame parsing: every element validated, refused with a precise reason, or skipped."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.parsing import FrameError, ParsedFrame, _parse_slow, parse_frame
from tickwatch.schemas import MinuteBar, Quote, Trade, decode

TRADE = {
    "ev": "T",
    "sym": "AAPL",
    "i": "52983525029461",
    "x": 11,
    "p": 190.12,
    "s": 100,
    "c": [12, 41],
    "t": 1741012200123,
    "q": 1063,
    "z": 3,
    "trfi": 202,
    "trft": 1,
}
QUOTE = {
    "ev": "Q",
    "sym": "MSFT",
    "bx": 4,
    "bp": 410.01,
    "bs": 2,
    "ax": 7,
    "ap": 410.05,
    "as": 3,
    "c": [0],
    "i": [604],
    "t": 1741012200200,
    "q": 50385480,
    "z": 3,
}
BAR = {
    "ev": "AM",
    "sym": "TSLA",
    "v": 12000,
    "av": 250000,
    "op": 250.0,
    "vw": 250.51,
    "o": 250.4,
    "c": 250.6,
    "h": 250.9,
    "l": 250.1,
    "a": 250.2,
    "z": 100,
    "s": 1741012200000,
    "e": 1741012260000,
}
SECOND = dict(BAR, ev="A", s=1741012200000, e=1741012201000)
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than msgspec's and the stdlib's recursion limits


def test_mixed_frame() -> None:
    frame = json.dumps(
        [
            TRADE,
            QUOTE,
            BAR,
            SECOND,
            {"ev": "status", "status": "success", "message": "subscribed to: T.*"},
        ]
    )
    out = parse_frame(frame.encode(), source="replay")
    assert [e.kind for e in out.events] == ["T", "Q", "AM"]
    trade = decode(Trade, out.events[0].payload)
    assert (trade.symbol, trade.price, trade.size, trade.timestamp_ms) == (
        "AAPL",
        190.12,
        100,
        1741012200123,
    )
    assert trade.trade_id == "52983525029461" and trade.conditions == [12, 41]
    assert decode(Quote, out.events[1].payload).ask_size == 3
    bar = decode(MinuteBar, out.events[2].payload)
    assert (bar.start_ms, bar.end_ms, bar.transactions, bar.source) == (
        1741012200000,
        1741012260000,
        120,
        "replay",
    )
    assert out.events[2].timestamp_ms == bar.start_ms
    assert out.skipped == {"A": 1}  # per-second aggregates are not minute bars
    assert out.statuses == [("success", "subscribed to: T.*")]
    assert out.refused == []


@pytest.mark.parametrize(
    ("element", "kind", "words"),
    [
        (dict(TRADE, p=-1.0), "invalid", "T: Trade.price: Input should be greater than 0"),
        (dict(TRADE, p=float("nan")), "invalid", "Trade.price"),
        (dict(TRADE, p="abc"), "invalid", "Trade.price"),
        (dict(TRADE, sym="aapl"), "invalid", "Trade.symbol"),
        (dict(TRADE, t=17410122001), "invalid", "Trade.timestamp_ms"),  # seconds*10, not ms
        ({k: v for k, v in TRADE.items() if k != "p"}, "invalid", "missing field(s) p"),
        (dict(BAR, h=1.0), "invalid", "OHLC inconsistent"),
        (dict(BAR, s=1741012200001), "invalid", "minute boundary"),
        (
            {k: v for k, v in BAR.items() if k not in ("s", "e")} | {"t": 1741012200000},
            "invalid",
            "missing field(s) s, e",
        ),
        ({"ev": "XQ", "sym": "AAPL"}, "unknown_event", "unknown event type ev='XQ'"),
        ({"sym": "AAPL"}, "unknown_event", "ev=None"),
        ([1, 2], "not_an_object", "JSON list, not an object"),
    ],
)
def test_refusals_say_why(element, kind, words) -> None:
    out = parse_frame(json.dumps([TRADE, element]))
    assert len(out.events) == 1 and len(out.refused) == 1
    refused = out.refused[0]
    assert refused.kind == kind and words in refused.reason, refused.reason
    assert json.loads(refused.raw.replace("NaN", "null")) is not None


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xfe",
        "{not json",
        '{"ev": "T"}',
        "[" * 100_000,
        "{" * 100_000,
        DEEP + "]",
        "[" + DEEP + "}",
        DEEP + " 1",
        "",
        "null",
        "12",
    ],
)
def test_unusable_frames_raise_frame_error(frame) -> None:
    with pytest.raises(FrameError):
        parse_frame(frame)


@pytest.mark.parametrize(
    "element",
    [
        DEEP,
        json.dumps({"ev": "T", "sym": "AAPL"})[:-1] + ', "x": ' + DEEP + "}",
        json.dumps({"ev": "ZZ", "nested": "x"})[:-1] + ', "y": ' + DEEP + "}",
    ],
)
def test_a_too_deep_element_costs_itself_only(element) -> None:
    frame = f"[{json.dumps(TRADE)}, {element}, {json.dumps(BAR)}]"
    out = parse_frame(frame)
    assert [e.kind for e in out.events] == ["T", "AM"]
    assert [(r.kind, r.raw) for r in out.refused] == [("too_deep", element)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    st.sampled_from(["AAPL", "BRK.B", "", "aapl", "A" * 17, 'X"Y', "AAPL\n", "É"])
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.booleans()
    | st.none()
    | st.lists(st.integers(-5, 2**64), max_size=3)
    | st.text(max_size=5)
    | st.sampled_from([1741012200123, 1741012200000, 190.5, 0, -1])
)
hostile_events = st.builds(
    lambda base, changes, drops: {k: v for k, v in (base | changes).items() if k not in drops},
    st.sampled_from([TRADE, QUOTE, BAR, SECOND]),
    st.dictionaries(
        st.sampled_from(sorted(set(TRADE) | set(QUOTE) | set(BAR))), field_values, max_size=4
    ),
    st.sets(st.sampled_from(sorted(set(TRADE) | set(BAR))), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(hostile_events | json_values, max_size=6))
def test_hostile_elements_are_filed_never_raised(elements) -> None:
    try:
        text = json.dumps(elements)
    except ValueError:
        return
    out = parse_frame(text)
    accounted = len(out.events) + len(out.refused) + len(out.statuses) + sum(out.skipped.values())
    assert accounted == len(elements)
    for event in out.events:
        model = {"T": Trade, "Q": Quote, "AM": MinuteBar}[event.kind]
        assert decode(model, event.payload).symbol == event.symbol


@settings(max_examples=300, deadline=None)
@given(hostile_events.filter(lambda e: e.get("ev") == "T"))
def test_fast_trade_path_equals_pydantic_path(element) -> None:
    fast = parse_frame(json.dumps([element]))
    slow = ParsedFrame()
    _parse_slow(element, "T", "polygon", slow)
    assert [decode(Trade, e.payload) for e in fast.events] == [
        decode(Trade, e.payload) for e in slow.events
    ]
    assert [r.reason for r in fast.refused] == [r.reason for r in slow.refused]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_random_bytes_raise_only_frame_error(frame) -> None:
    with contextlib.suppress(FrameError):
        parse_frame(frame)
