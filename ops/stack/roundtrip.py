"""Smoke test of the stack: one MinuteBar through Kafka and back, one Redis round trip."""

from __future__ import annotations

import time
import uuid
from typing import cast

import redis
import typer

from tickwatch.kafka import consume_batch, flush_or_raise, make_consumer, make_producer, produce
from tickwatch.schemas import MinuteBar, decode, encode
from tickwatch.settings import Settings


def run(settings: Settings) -> None:
    """Produce a bar to a fresh topic, consume it, and check it is the same record."""
    from confluent_kafka.admin import NewTopic

    from tickwatch.kafka import admin

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    client = admin(settings)
    client.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    now = int(time.time() // 60 * 60_000)
    bar = MinuteBar(
        symbol="AAPL",
        start_ms=now,
        end_ms=now + 60_000,
        open=190.0,
        high=190.5,
        low=189.9,
        close=190.2,
        volume=1200,
        vwap=190.1,
        transactions=40,
        source="replay",
    )
    producer = make_producer(settings)
    t0 = time.perf_counter()
    produce(producer, topic, encode(bar), key=bar.symbol, timestamp_ms=bar.end_ms)
    flush_or_raise(producer)
    consumer = make_consumer(settings, f"roundtrip-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    got = None
    deadline = time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        for msg in consume_batch(consumer, 10, 1.0):
            got = decode(MinuteBar, msg.value() or b"")
    consumer.close()
    client.delete_topics([topic])
    if got != bar:
        raise SystemExit(f"round trip failed: sent {bar}, got {got}")
    ms = (time.perf_counter() - t0) * 1000
    typer.echo(f"kafka round trip ok in {ms:.0f} ms: {got.model_dump_json()}")
    r = redis.Redis(settings.redis.host, settings.redis.port)
    r.set("tickwatch:roundtrip", bar.model_dump_json(), ex=60)
    stored = cast(bytes, r.get("tickwatch:roundtrip"))  # redis-py: sync | async reply type
    assert decode(MinuteBar, stored) == bar
    typer.echo("redis round trip ok")
