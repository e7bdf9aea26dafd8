"""`/v1/symbols/{symbol}/bars` and the bar sink against real Kafka and Redis: paging, filters,
trimming to `bars_kept`, replays, corrections, cache invalidation, auth and 422s."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from api_support import BASE_MS, MINUTE, api_server
from pydantic import SecretStr

from api.bar_sink import BarSink
from tickwatch.kafka import consume_batch, flush_or_raise, make_producer, produce
from tickwatch.schemas import MinuteBar, encode
from tickwatch.settings import Settings
from tickwatch.topics import BARS, topic_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
KEY = "test-key-bars-7d2e"
KEPT = 30


def make_bar(symbol: str, minute: int, close: float | None = None) -> MinuteBar:
    start = BASE_MS + minute * MINUTE
    c = close if close is not None else 100.0 + minute
    return MinuteBar(
        symbol=symbol,
        start_ms=start,
        end_ms=start + MINUTE,
        open=c - 0.5,
        high=c + 1,
        low=c - 1,
        close=c,
        volume=1000.0 + minute,
        vwap=c,
        transactions=10,
        source="replay",
    )


def publish(settings: Settings, bars: list[MinuteBar]) -> None:
    producer = make_producer(settings)
    for b in bars:
        produce(producer, topic_name(BARS, settings), encode(b), key=b.symbol)
    flush_or_raise(producer)


def sink_bars(settings: Settings, expected: int, timeout_s: float = 60) -> None:
    """Run a bar sink until it has read `expected` more records."""
    sink = BarSink(settings)
    sink.consumer.subscribe([sink.topic])
    seen, deadline = 0, time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            msgs = consume_batch(sink.consumer, 500, 0.5)
            if msgs:
                sink.process(msgs)
                seen += len(msgs)
    finally:
        sink.consumer.close()
    assert seen == expected


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    api = settings.api.model_copy(
        update={
            "api_key": SecretStr(KEY),
            "cache_ttl_s": 60.0,
            "max_page_size": 20,
            "bars_kept": KEPT,
        }
    )
    return settings.model_copy(update={"api": api})


@pytest.fixture
def client(api_settings: Settings) -> Iterator[httpx.Client]:
    with (
        api_server(api_settings) as url,
        httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=10) as c,
    ):
        yield c


def starts(resp: httpx.Response) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [b["start_ms"] for b in resp.json()["items"]]


def minutes(*ms: int) -> list[int]:
    return [BASE_MS + m * MINUTE for m in ms]


def test_pages_newest_first_keep_the_newest_and_filter(
    api_settings: Settings, client: httpx.Client
) -> None:
    bars = [make_bar(sym, m) for m in range(40) for sym in ("AAPL", "MSFT")]
    publish(api_settings, bars)
    sink_bars(api_settings, len(bars))
    kept = list(range(39, 39 - KEPT, -1))  # minutes 10..39, newest first

    first = client.get("/v1/symbols/aapl/bars", params={"limit": 12})
    assert starts(first) == minutes(*kept[:12])
    pages, cursor = [starts(first)], first.json()["next_cursor"]
    while cursor:
        resp = client.get("/v1/symbols/AAPL/bars", params={"limit": 12, "cursor": cursor})
        pages.append(starts(resp))
        cursor = resp.json()["next_cursor"]
    assert [ms for page in pages for ms in page] == minutes(*kept)
    assert [len(p) for p in pages] == [12, 12, 6]

    window = client.get(
        "/v1/symbols/MSFT/bars", params={"from": BASE_MS + 20 * MINUTE, "to": "2026-01-01T00:25Z"}
    )
    assert starts(window) == minutes(25, 24, 23, 22, 21, 20)
    item = window.json()["items"][0]
    assert MinuteBar.model_validate(item) == make_bar("MSFT", 25)
    default = client.get("/v1/symbols/MSFT/bars")
    assert len(starts(default)) == 20  # the default page is capped at max_page_size
    assert starts(client.get("/v1/symbols/TSLA/bars")) == []


def test_a_replay_changes_nothing_and_a_corrected_bar_replaces_its_minute(
    api_settings: Settings, client: httpx.Client
) -> None:
    bars = [make_bar("AAPL", m) for m in range(5)]
    publish(api_settings, bars)
    sink_bars(api_settings, len(bars))
    before = client.get("/v1/symbols/AAPL/bars").json()
    publish(api_settings, bars + [make_bar("AAPL", 4, close=250.0)])
    sink_bars(api_settings, len(bars) + 1)
    after = client.get("/v1/symbols/AAPL/bars").json()  # same query: the cache was invalidated
    assert [b["start_ms"] for b in after["items"]] == [b["start_ms"] for b in before["items"]]
    assert after["items"][0]["close"] == 250.0
    assert after["items"][1:] == before["items"][1:]


def test_auth_and_invalid_parameters(client: httpx.Client, api_settings: Settings) -> None:
    url = str(client.base_url)
    assert httpx.get(f"{url}/v1/symbols/AAPL/bars").status_code == 401
    wrong = httpx.get(f"{url}/v1/symbols/AAPL/bars", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    for params, name in (
        ({"limit": 21}, "limit"),
        ({"limit": 0}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"from": BASE_MS + MINUTE, "to": BASE_MS}, "from"),
        ({"cursor": "bm90Om51bWJlcg"}, "cursor"),
    ):
        resp = client.get("/v1/symbols/AAPL/bars", params=params)
        assert resp.status_code == 422, params
        assert f"'{name}'" in resp.json()["message"]
    assert client.get("/v1/symbols/not$a$symbol/bars").status_code == 422


def test_symbols_lists_the_configured_symbols_in_exchange_time(
    client: httpx.Client, api_settings: Settings
) -> None:
    body = client.get("/v1/symbols").json()
    assert body == {
        "symbols": api_settings.symbols,
        "market_symbol": api_settings.features.market_symbol,
        "timezone": "America/New_York",
    }
