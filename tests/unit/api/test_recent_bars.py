"""Pure parts of the bars endpoint: cursors, cache keys, page assembly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.recent_bars import BarCursorError, BarQuery, decode_cursor, encode_cursor, page_json
from api.routes.pages import DASHBOARD_CSP


@given(st.integers(0, 4_102_444_800_000))
def test_cursor_round_trips(ms: int) -> None:
    assert decode_cursor(encode_cursor(ms)) == ms


@pytest.mark.parametrize("token", ["", "abc", "!!!!", "YmFyczo", "YmFyczp4", "Zm9vOjEyMw"])
def test_foreign_cursors_are_refused(token: str) -> None:
    with pytest.raises(BarCursorError):
        decode_cursor(token)


def test_cache_keys_differ_in_every_field() -> None:
    base = BarQuery("AAPL", 1, 2, 10, 3)
    variants = [
        BarQuery("MSFT", 1, 2, 10, 3),
        BarQuery("AAPL", None, 2, 10, 3),
        BarQuery("AAPL", 1, None, 10, 3),
        BarQuery("AAPL", 1, 2, 11, 3),
        BarQuery("AAPL", 1, 2, 10, None),
    ]
    assert len({q.cache_key() for q in [base, *variants]}) == 6


def test_page_json_is_the_bar_page() -> None:
    bars = [b'{"start_ms": 2}', b'{"start_ms": 1}']
    page = json.loads(page_json(bars, 1))
    assert page["items"] == [{"start_ms": 2}, {"start_ms": 1}]
    assert decode_cursor(page["next_cursor"]) == 1
    assert json.loads(page_json([], None)) == {"items": [], "next_cursor": None}


def test_the_dashboard_may_only_talk_to_its_own_origin() -> None:
    directives = dict(d.strip().split(" ", 1) for d in DASHBOARD_CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
