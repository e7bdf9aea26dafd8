"""Polygon REST aggregates: the VWAP fallback."""

from __future__ import annotations

import httpx
import pytest

from producers.rest import fetch_minute_bars
from tickwatch.bar_files import typical_price

START = 1_738_593_000_000


def row(t: int, **extra: float) -> dict:
    return {"t": t, "o": 10.0, "h": 10.5, "l": 9.5, "c": 10.25, "v": 100.0, "n": 3, **extra}


def client(statuses: list[tuple[int, dict[str, str]]]) -> httpx.Client:
    """Answers each GET with the next (status, headers), then 200 with two bars (one with no
    `vw`)."""
    answers = iter(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        status, headers = next(answers, (200, {}))
        if status != 200:
            return httpx.Response(status, headers=headers)
        results = [row(START, vw=10.1), row(START + 60_000)]
        return httpx.Response(200, json={"status": "OK", "results": results})

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_a_bar_without_vwap_gets_the_typical_price_as_bar_files_do() -> None:
    bars, _ = fetch_minute_bars(client([]), "http://x", "k", "AAA", START, START)
    assert bars[0].vwap == 10.1
    assert bars[1].vwap == typical_price(10.5, 9.5, 10.25) == pytest.approx(10.0833333)
