"""Polygon REST aggregates: Retry-After first, else the one jittered backoff; the VWAP fallback."""

from __future__ import annotations

import httpx
import pytest

from producers.rest import RETRY_FIRST_S, RestError, fetch_minute_bars
from tickwatch.bar_files import typical_price
from tickwatch.retry import JITTER

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


def test_retry_after_is_honoured_else_the_jittered_backoff() -> None:
    waits: list[float] = []
    answers = [(429, {"Retry-After": "7"}), (503, {}), (429, {"Retry-After": "soon"})]
    bars, refused = fetch_minute_bars(
        client(answers), "http://x", "k", "AAA", START, START, sleep=waits.append
    )
    assert len(bars) == 2 and refused == []
    assert waits[0] == 7.0
    for attempt, wait in enumerate(waits[1:], start=1):  # no usable Retry-After
        step = RETRY_FIRST_S * 2**attempt
        assert JITTER[0] * step <= wait <= JITTER[1] * step


def test_gives_up_after_max_retries() -> None:
    waits: list[float] = []
    with pytest.raises(RestError, match="HTTP 429 after 2 retries"):
        fetch_minute_bars(
            client([(429, {})] * 5), "http://x", "k", "A", 0, 1, max_retries=2, sleep=waits.append
        )
    assert len(waits) == 2


def test_a_bar_without_vwap_gets_the_typical_price_as_bar_files_do() -> None:
    bars, _ = fetch_minute_bars(client([]), "http://x", "k", "AAA", START, START)
    assert bars[0].vwap == 10.1
    assert bars[1].vwap == typical_price(10.5, 9.5, 10.25) == pytest.approx(10.0833333)
