"""`/v1/anomalies` against real Kafka and Redis: filters, pagination, auth, 422s, cache, SSE."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
import redis
from api_support import BASE_MS, MINUTE, api_server, drain, make_event, produce_events
from pydantic import SecretStr

from api.anomaly_store import RECORD
from tickwatch.schemas import AnomalyEvent, encode
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
KEY = "test-key-5f1c9a"


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    api = settings.api.model_copy(
        update={"api_key": SecretStr(KEY), "cache_ttl_s": 60.0, "max_page_size": 50}
    )
    return settings.model_copy(update={"api": api})


@pytest.fixture
def seeded(api_settings: Settings) -> list[AnomalyEvent]:
    """Events for 3 symbols over 8 minutes (ties across symbols), stored through the sink."""
    severities = ["low", "medium", "high", "critical"]
    events = [
        make_event(
            sym, minute, severities[(minute + i) % 4], "iforest" if minute % 2 else "lstm_ae"
        )
        for i, sym in enumerate(("AAPL", "MSFT", "TSLA"))
        for minute in range(8)
    ]
    produce_events(api_settings, events)
    assert drain(api_settings, len(events)) == len(events)
    return events


@pytest.fixture
def client(api_settings: Settings) -> Iterator[httpx.Client]:
    with (
        api_server(api_settings) as url,
        httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=10) as c,
    ):
        yield c


def newest_first(events: list[AnomalyEvent]) -> list[str]:
    return [
        e.event_id for e in sorted(events, key=lambda e: (e.bar_start_ms, e.event_id), reverse=True)
    ]


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [item["event_id"] for item in resp.json()["items"]]


def test_filters(client: httpx.Client, seeded: list[AnomalyEvent]) -> None:
    assert ids(client.get("/v1/anomalies")) == newest_first(seeded)
    aapl = [e for e in seeded if e.symbol == "AAPL"]
    assert ids(client.get("/v1/anomalies", params={"symbol": "aapl"})) == newest_first(aapl)
    window = [e for e in seeded if BASE_MS + 2 * MINUTE <= e.bar_start_ms <= BASE_MS + 4 * MINUTE]
    by_ms = client.get(
        "/v1/anomalies", params={"from": BASE_MS + 2 * MINUTE, "to": BASE_MS + 4 * MINUTE}
    )
    assert ids(by_ms) == newest_first(window)
    by_iso = client.get(
        "/v1/anomalies", params={"from": "2026-01-01T00:02:00Z", "to": "2026-01-01T00:04:00+00:00"}
    )
    assert ids(by_iso) == newest_first(window)
    severe = [e for e in seeded if e.severity in ("high", "critical")]
    assert ids(client.get("/v1/anomalies", params={"min_severity": "high"})) == newest_first(severe)
    lstm = [e for e in seeded if e.scores[0].model == "lstm_ae"]
    assert ids(client.get("/v1/anomalies", params={"model": "lstm_ae"})) == newest_first(lstm)
    both = [e for e in lstm if e.symbol == "MSFT" and e.severity == "critical"]
    resp = client.get(
        "/v1/anomalies", params={"model": "lstm_ae", "symbol": "MSFT", "min_severity": "critical"}
    )
    assert ids(resp) == newest_first(both) and both
    assert ids(client.get("/v1/anomalies", params={"symbol": "GOOGL"})) == []


def test_cursor_pagination_walks_every_event_once_in_order(
    client: httpx.Client, seeded: list[AnomalyEvent]
) -> None:
    for params in ({}, {"min_severity": "medium"}, {"symbol": "TSLA"}):
        expected = newest_first(
            [
                e
                for e in seeded
                if (
                    (params.get("symbol") in (None, e.symbol))
                    and (params.get("min_severity") is None or e.severity != "low")
                )
            ]
        )
        got, cursor = [], None
        for _ in range(50):
            page = client.get(
                "/v1/anomalies",
                params={**params, "limit": 4, **({"cursor": cursor} if cursor else {})},
            )
            got += ids(page)
            assert len(page.json()["items"]) <= 4
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert got == expected


def test_one_event_with_full_explanation_and_404(
    client: httpx.Client, seeded: list[AnomalyEvent]
) -> None:
    event = seeded[5]
    resp = client.get(f"/v1/anomalies/{event.event_id}")
    assert resp.status_code == 200
    assert AnomalyEvent.model_validate(resp.json()) == event
    missing = client.get(f"/v1/anomalies/{'0' * 32}")
    assert missing.status_code == 404 and "0" * 32 in missing.json()["detail"]


def test_auth_and_health(client: httpx.Client, seeded: list[AnomalyEvent]) -> None:
    url = f"/v1/anomalies/{seeded[0].event_id}"
    for headers in ({"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
        resp = client.get(url, headers=headers)
        assert resp.status_code == 401 and "X-API-Key" in resp.json()["detail"]
    no_key = httpx.get(f"{client.base_url}/v1/anomalies", timeout=10)
    assert no_key.status_code == 401
    for path in ("/v1/models", "/v1/symbols/AAPL/features", "/v1/anomalies/stream"):
        assert httpx.get(f"{client.base_url}{path}", timeout=10).status_code == 401
    assert httpx.post(f"{client.base_url}/v1/score", json={}, timeout=10).status_code == 401
    assert httpx.get(f"{client.base_url}/healthz", timeout=10).json() == {"status": "ok"}
    metrics = httpx.get(f"{client.base_url}/metrics", timeout=10).text
    assert 'route="/v1/anomalies/{event_id}"' in metrics and 'status="401"' in metrics


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 51}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": BASE_MS + 1, "to": BASE_MS}, "from"),
        ({"min_severity": "huge"}, "min_severity"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"symbol": "$$$"}, "symbol"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(
    client: httpx.Client, params: dict, param: str
) -> None:
    resp = client.get("/v1/anomalies", params=params)
    assert resp.status_code == 422
    assert f"'{param}'" in resp.json()["message"]


def test_cache_serves_hot_queries_and_the_sink_invalidates_per_symbol(
    api_settings: Settings, client: httpx.Client, seeded: list[AnomalyEvent]
) -> None:
    before = ids(client.get("/v1/anomalies", params={"symbol": "AAPL"}))
    msft_before = ids(client.get("/v1/anomalies", params={"symbol": "MSFT"}))
    r = redis.Redis(api_settings.redis.host, api_settings.redis.port, db=api_settings.redis.db)
    r.delete(f"{RECORD}{before[0]}")  # behind the cache's back: cached pages still show it
    assert ids(client.get("/v1/anomalies", params={"symbol": "AAPL"})) == before

    fresh = make_event("AAPL", 100)
    produce_events(api_settings, [fresh])
    drain(api_settings, 1)

    after = ids(client.get("/v1/anomalies", params={"symbol": "AAPL"}))
    assert after == [fresh.event_id, *before[1:]]  # recomputed: new event in, deleted one gone
    assert fresh.event_id in ids(client.get("/v1/anomalies"))  # the all-symbols scope too
    r.delete(f"{RECORD}{msft_before[0]}")
    assert ids(client.get("/v1/anomalies", params={"symbol": "MSFT"})) == msft_before  # untouched


def test_live_stream_delivers_a_new_anomaly(api_settings: Settings, client: httpx.Client) -> None:
    event = make_event("GOOGL", 7, "critical")
    other = make_event("MSFT", 7)
    received: list[str] = []
    subscribed = threading.Event()

    def listen() -> None:
        with client.stream(
            "GET", "/v1/anomalies/stream", params={"symbol": "GOOGL"}, timeout=httpx.Timeout(30)
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith(": subscribed"):
                    subscribed.set()
                received.append(line)
                if line.startswith("data:"):
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert subscribed.wait(30)
    produce_events(api_settings, [other, event])
    drain(api_settings, 2)
    thread.join(30)
    assert "event: anomaly" in received and f"id: {event.event_id}" in received
    data = next(line for line in received if line.startswith("data:"))
    assert AnomalyEvent.model_validate_json(data.removeprefix("data:").strip()) == event
    assert encode(other).decode() not in "\n".join(received)
