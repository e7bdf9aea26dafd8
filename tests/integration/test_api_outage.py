"""Redis outage: the API answers 503 and recovers by itself; the sink retries until Redis is back.

Uses a private redis-server on its own port; the shared one is never touched.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis
from api_support import RedisServer, api_server, make_event, produce_events
from prometheus_client import REGISTRY

from api.anomaly_store import ALL, AnomalyStore
from api.sink import AnomalySink
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "dev-key-change-me"


def test_redis_outage_gives_503_and_the_api_recovers(settings: Settings, tmp_path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        s = settings.model_copy(
            update={"redis": settings.redis.model_copy(update={"port": server.port, "db": 0})}
        )
        event = make_event("AAPL", 3)
        AnomalyStore(redis.Redis("127.0.0.1", server.port), 30).write_batch([event])
        with (
            api_server(s) as url,
            httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=10) as client,
        ):
            assert client.get("/v1/anomalies").json()["items"][0]["event_id"] == event.event_id

            server.stop()
            for path in (
                "/v1/anomalies",
                f"/v1/anomalies/{event.event_id}",
                "/v1/anomalies/stream",
            ):
                down = client.get(path)
                assert down.status_code == 503, (path, down.text)
                assert down.json()["dependency"] == "redis"
                assert "Redis is unavailable" in down.json()["detail"]
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503 and not ready.json()["checks"]["redis"]["ok"]

            server.start()  # same port, empty data
            AnomalyStore(redis.Redis("127.0.0.1", server.port), 30).write_batch([event])
            statuses = []
            for _ in range(20):  # the client reconnects on its own; no restart of the API
                statuses.append(client.get(f"/v1/anomalies/{event.event_id}").status_code)
                if statuses[-1] == 200:
                    break
                time.sleep(0.25)
            assert statuses[-1] == 200, statuses
            assert client.get("/v1/anomalies").json()["items"][0]["event_id"] == event.event_id
    finally:
        server.stop()


def errors_counted() -> float:
    labels = {"stage": "sink", "kind": "redis"}
    return REGISTRY.get_sample_value("tickwatch_errors_total", labels) or 0.0


def test_sink_holds_the_batch_while_redis_is_down_and_stores_it_after(
    settings: Settings, tmp_path
) -> None:
    server = RedisServer(tmp_path / "redis-sink")
    server.start()
    s = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"port": server.port, "db": 0})}
    )
    sink = AnomalySink(s)
    thread = threading.Thread(target=sink.run_forever, daemon=True)
    try:
        server.stop()
        events = [make_event("MSFT", m) for m in range(3)]
        produce_events(s, events)
        before = errors_counted()
        thread.start()
        for _ in range(200):  # the sink has read the batch and is retrying the write
            if errors_counted() > before:
                break
            time.sleep(0.1)
        assert errors_counted() > before
        server.start()
        client = redis.Redis("127.0.0.1", server.port)
        for _ in range(200):
            if client.zcard(ALL) == 3:
                break
            time.sleep(0.1)
        assert sorted(client.zrange(ALL, 0, -1)) == sorted(e.event_id.encode() for e in events)
    finally:
        sink.stop_event.set()
        thread.join(30)
        server.stop()
    assert not thread.is_alive()
