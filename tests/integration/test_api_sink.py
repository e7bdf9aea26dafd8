"""The anomaly sink against real Kafka and Redis: idempotent replay, dead letters, retention."""

from __future__ import annotations

import json

import pytest
import redis
from api_support import drain, make_event, produce_events, produce_raw
from metrics_support import grown, histogram
from prometheus_client import REGISTRY

from api.anomaly_store import ALL, BY_SYMBOL, CACHE_VERSION, RECORD, SYMBOLS
from tickwatch.kafka import consume_batch, make_consumer
from tickwatch.schemas import DeadLetter, decode, encode
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, DEAD_LETTER, topic_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def snapshot(client: redis.Redis) -> dict[bytes, object]:
    """Every key's type and full value."""
    out: dict[bytes, object] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        else:
            out[key] = kind
    return out


def repeats_counted() -> float:
    """tickwatch_duplicates_total{stage="sink"} in this process."""
    labels = {"stage": "sink", "kind": "already_stored"}
    return REGISTRY.get_sample_value("tickwatch_duplicates_total", labels) or 0.0


def hop_seconds() -> tuple[float, float]:
    return histogram("tickwatch_hop_latency_seconds", hop="anomalies_to_store")


def ingest_seconds() -> tuple[float, float]:
    return histogram("tickwatch_event_to_emit_seconds", stage="sink")


def test_replaying_the_topic_changes_nothing(settings: Settings) -> None:
    events = [
        make_event(sym, minute, model=model)
        for sym in ("AAPL", "MSFT")
        for minute in range(5)
        for model in ("iforest", "lstm_ae")
    ]
    produce_events(settings, events + events[:3])  # the topic itself holds duplicates
    client = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)

    repeats, hop, ingest = repeats_counted(), hop_seconds(), ingest_seconds()
    assert drain(settings, len(events) + 3, group="first") == len(events) + 3
    first = snapshot(client)
    assert repeats_counted() - repeats == 3
    # an event -> store hop for each record read, each within its ingest-to-store latency
    hop_count, hop_sum = grown(hop_seconds(), hop)
    ingest_count, ingest_sum = grown(ingest_seconds(), ingest)
    assert hop_count == ingest_count == len(events) + 3
    assert 0 < hop_sum <= ingest_sum
    assert drain(settings, len(events) + 3, group="replay") == len(events) + 3

    assert snapshot(client) == first
    assert repeats_counted() - repeats == 3 + len(events) + 3
    assert client.zcard(ALL) == len(events)
    assert client.zcard(f"{BY_SYMBOL}AAPL") == 10
    assert sorted(client.smembers(SYMBOLS)) == [b"AAPL", b"MSFT"]
    stored = json.loads(client.get(f"{RECORD}{events[0].event_id}"))
    assert stored == json.loads(encode(events[0]))
    assert client.zscore(f"{BY_SYMBOL}AAPL", events[0].event_id) == events[0].bar_start_ms


def dead_letters(settings: Settings, expected: int) -> list[DeadLetter]:
    """The dead letters on the topic (reads until `expected` arrived or 60 s passed)."""
    consumer = make_consumer(settings, f"{settings.topic_prefix}dlq-check")
    consumer.subscribe([topic_name(DEAD_LETTER, settings)])
    letters: list[DeadLetter] = []
    for _ in range(120):
        letters += [decode(DeadLetter, m.value()) for m in consume_batch(consumer, 100, 0.5)]
        if len(letters) >= expected:
            break
    consumer.close()
    return letters


def test_bad_records_go_to_dead_letters_and_the_rest_is_stored(settings: Settings) -> None:
    good = make_event("TSLA", 1)
    bad_json = b'{"not": "an event"'
    nan_close = encode(make_event("TSLA", 2)).replace(b'"close":102.0', b'"close":NaN')
    unknown = encode(make_event("ZZZ", 3))
    produce_raw(settings, [bad_json, encode(good), nan_close, b"", unknown])

    assert drain(settings, 5) == 5

    client = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)
    assert client.zrange(ALL, 0, -1) == [good.event_id.encode()]
    letters = dead_letters(settings, 4)
    assert sorted(d.raw for d in letters) == sorted(
        r.decode() for r in (bad_json, nan_close, b"", unknown)
    )
    kinds = sorted(d.reason.split(":")[0] for d in letters)
    assert kinds == ["schema", "schema", "schema", "unknown_symbol"]
    assert all(d.source == "sink" for d in letters)
    assert all(d.topic == topic_name(ANOMALIES, settings) and d.offset is not None for d in letters)


def test_retention_trims_by_bar_time_and_refuses_expired_late_events(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"anomaly_retention_days": 1})}
    )
    old, newer = make_event("VOO", 0), make_event("VOO", 60 * 36)  # 36 h apart
    produce_events(settings, [old])
    drain(settings, 1)
    client = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)
    version_before = int(client.get(f"{CACHE_VERSION}VOO"))
    assert client.zrange(ALL, 0, -1) == [old.event_id.encode()]

    late = make_event("VOO", 5)  # inside the first day: older than newest - 1 day
    # one at a time: events are keyed by id, so they may sit on different partitions, and only
    # a bar older than the newest *already stored* one is late
    produce_events(settings, [newer])
    drain(settings, 1)
    produce_events(settings, [late])
    drain(settings, 1)

    assert client.zrange(ALL, 0, -1) == [newer.event_id.encode()]
    assert client.zrange(f"{BY_SYMBOL}VOO", 0, -1) == [newer.event_id.encode()]
    assert client.get(f"{RECORD}{old.event_id}") is None
    assert client.get(f"{RECORD}{late.event_id}") is None
    assert int(client.get(f"{CACHE_VERSION}VOO")) > version_before
    (letter,) = dead_letters(settings, 1)
    assert letter.reason.startswith("expired:") and letter.raw == encode(late).decode()
