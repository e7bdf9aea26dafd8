"""The local stack is real: Kafka 4 with confluent-kafka and aiokafka, Redis, Prometheus."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

from tickwatch.kafka import (
    admin,
    consume_batch,
    ensure_topics,
    flush_or_raise,
    make_consumer,
    make_producer,
    produce,
)
from tickwatch.schemas import MinuteBar, decode, encode
from tickwatch.settings import Settings
from tickwatch.topics import ALL_TOPICS, BARS, DEAD_LETTER, partitions_for, topic_name

START = 1_767_000_000_000 // 60_000 * 60_000


def _bar(i: int) -> MinuteBar:
    return MinuteBar(
        symbol="AAPL",
        start_ms=START + i * 60_000,
        end_ms=START + (i + 1) * 60_000,
        open=100 + i,
        high=101 + i,
        low=99 + i,
        close=100.5 + i,
        volume=1000 + i,
        vwap=100.2 + i,
        transactions=10,
        source="replay",
    )


def test_broker_is_kafka_4(settings: Settings) -> None:
    md = admin(settings).list_topics(timeout=10)
    assert md.brokers, "no broker in metadata"
    # Kafka 4 dropped ZooKeeper: the cluster answers with a KRaft controller id
    assert md.controller_id == 1


def test_topics_created_with_layout_and_idempotent(settings: Settings) -> None:
    md = admin(settings).list_topics(timeout=10)
    for spec in ALL_TOPICS:
        name = topic_name(spec, settings)
        assert name in md.topics
        assert len(md.topics[name].partitions) == partitions_for(spec, settings)
    assert ensure_topics(settings) == []  # second call creates nothing and does not fail
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name(DEAD_LETTER, settings))
    client = admin(settings)  # keep a reference: the futures die with the client
    cfg = client.describe_configs([res])[res].result()
    assert cfg["retention.ms"].value == str(DEAD_LETTER.retention_ms)
    assert cfg["message.timestamp.type"].value == "LogAppendTime"


def test_confluent_kafka_round_trip_keeps_order_per_key(settings: Settings) -> None:
    topic = topic_name(BARS, settings)
    producer = make_producer(settings)
    bars = [_bar(i) for i in range(50)]
    for b in bars:
        produce(producer, topic, encode(b), key=b.symbol, timestamp_ms=b.end_ms)
    flush_or_raise(producer)
    consumer = make_consumer(settings, f"g-{settings.topic_prefix}")
    consumer.subscribe([topic])
    got: list[MinuteBar] = []
    deadline = time.monotonic() + 30
    while len(got) < len(bars) and time.monotonic() < deadline:
        for m in consume_batch(consumer, 100, 1.0):
            got.append(decode(MinuteBar, m.value()))
            # the broker's append time, not the producer's event time: retention by arrival
            assert m.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME
    consumer.close()
    assert got == bars


def test_aiokafka_round_trip_on_kafka_4(settings: Settings) -> None:
    topic = topic_name(BARS, settings)

    async def run() -> list[MinuteBar]:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, encode(_bar(i)), key=b"AAPL")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=f"aio-{settings.topic_prefix}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        out: list[MinuteBar] = []
        try:
            while len(out) < 10:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for msgs in batch.values():
                    out.extend(decode(MinuteBar, m.value) for m in msgs)
        finally:
            await consumer.stop()
        return out

    assert asyncio.run(run()) == [_bar(i) for i in range(10)]


def test_redis_round_trip(settings: Settings) -> None:
    r = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)
    r.set("k", encode(_bar(1)))
    assert decode(MinuteBar, r.get("k")) == _bar(1)


def test_prometheus_up_and_scraping_itself(stack_settings: Settings) -> None:
    url = f"http://127.0.0.1:{stack_settings.prometheus.port}/api/v1/query?query=up"
    deadline = time.monotonic() + 30
    while True:
        body = json.load(urllib.request.urlopen(url, timeout=5))
        jobs = {r["metric"]["job"]: r["value"][1] for r in body["data"]["result"]}
        if jobs.get("prometheus") == "1" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert jobs.get("prometheus") == "1"
    assert {
        "tickwatch-producer",
        "tickwatch-features",
        "tickwatch-score",
        "tickwatch-sink",
        "tickwatch-api",
    } <= set(jobs)


def test_mlflow_server_healthy(stack_settings: Settings) -> None:
    url = f"http://127.0.0.1:{stack_settings.mlflow.port}/health"
    assert urllib.request.urlopen(url, timeout=5).status == 200
