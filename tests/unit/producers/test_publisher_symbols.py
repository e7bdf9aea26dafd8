"""The publisher refuses events of symbols that are not configured (queued only, no broker)."""

from __future__ import annotations

import json

from tickwatch.metrics import DEAD_LETTERS


def _frame(*symbols: str) -> str:
    return json.dumps(
        [{"ev": "T", "sym": s, "p": 10.0, "s": 5, "t": 1_764_000_000_000} for s in symbols]
    )


def test_unknown_symbol_goes_to_dead_letters(offline_publisher) -> None:
    publisher = offline_publisher("unit-symbols", ["AAPL"])
    before = DEAD_LETTERS.labels("unit-symbols", "unknown_symbol")._value.get()
    publisher.publish_frame(_frame("AAPL", "ZZZZ", "AAPL"))
    assert len(publisher.trade_producer) == 2  # the two AAPL trades are queued, ZZZZ is not
    assert DEAD_LETTERS.labels("unit-symbols", "unknown_symbol")._value.get() == before + 1


def test_star_accepts_every_symbol(offline_publisher) -> None:
    publisher = offline_publisher("unit-star", ["*"])
    publisher.publish_frame(_frame("AAPL", "ZZZZ"))
    assert len(publisher.trade_producer) == 2
    assert DEAD_LETTERS.labels("unit-star", "unknown_symbol")._value.get() == 0
