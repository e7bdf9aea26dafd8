"""The bar half of `tickwatch sink`: minute bars from Kafka into Redis for the dashboard's charts.

Runs beside the anomaly sink, in the same process, on its own consumer group. Offsets are committed
after a batch is in Redis and the write is idempotent, so a crash replays harmlessly. Bars on the
topic were validated by the producer (which dead-letters the rest); one that still fails to decode
is counted as an error and skipped, not dead-lettered a second time.
"""

from __future__ import annotations

import logging
import threading

import redis
from confluent_kafka import Consumer, Message

from api.recent_bars import RecentBars
from tickwatch.kafka import consume_batch, make_consumer
from tickwatch.metrics import ERRORS, EVENTS_IN, EVENTS_OUT
from tickwatch.retry import REDIS_DOWN, Stopped, retrying
from tickwatch.schemas import MinuteBar, SchemaError, decode
from tickwatch.settings import Settings
from tickwatch.stage import commit_consumed, run_steps
from tickwatch.topics import BARS, topic_name

log = logging.getLogger(__name__)
STAGE = "bar-sink"
GROUP = "tickwatch-bar-sink"


def sink_redis(settings: Settings) -> redis.Redis:
    """The sinks' Redis client: a write waits 5 s at most, a connection 2 s (then retried)."""
    return redis.Redis(
        settings.redis.host,
        settings.redis.port,
        db=settings.redis.db,
        socket_timeout=5,
        socket_connect_timeout=2,
    )


def _redis_failed(exc: BaseException, delay: float) -> None:
    ERRORS.labels(STAGE, "redis").inc()
    log.warning("Redis write failed (%s); retrying in %.1fs", exc, delay)


class BarSink:
    """Consumes the bars topic and keeps the newest `api.bars_kept` bars per symbol in Redis."""

    def __init__(self, settings: Settings, consumer: Consumer | None = None) -> None:
        self.settings = settings
        self.topic = topic_name(BARS, settings)
        self.consumer = consumer or make_consumer(settings, f"{settings.topic_prefix}{GROUP}")
        self.store = RecentBars(sink_redis(settings), settings.api.bars_kept)
        self.symbols = frozenset(settings.symbols)
        self.stop_event = threading.Event()

    def decode_batch(self, msgs: list[Message]) -> list[MinuteBar]:
        """The batch's bars of configured symbols; undecodable records are counted and skipped."""
        bars = []
        for msg in msgs:
            try:
                bar = decode(MinuteBar, msg.value() or b"")
            except SchemaError as exc:
                ERRORS.labels(STAGE, "schema").inc()
                log.warning("skipping an undecodable bar at offset %s: %s", msg.offset(), exc)
                continue
            if bar.symbol in self.symbols:
                bars.append(bar)
        EVENTS_IN.labels(STAGE, "MinuteBar").inc(len(msgs))
        return bars

    def process(self, msgs: list[Message]) -> int | None:
        """Store the batch (retrying while Redis is down), then commit; None if stopped first."""
        bars = self.decode_batch(msgs)
        retry = retrying(REDIS_DOWN, _redis_failed, stop=self.stop_event)
        try:
            new = retry(self.store.write_batch, bars)
        except Stopped:
            return None
        commit_consumed(self.consumer, STAGE)
        EVENTS_OUT.labels(STAGE, "MinuteBar").inc(len(bars))
        return new

    def step(self) -> int:
        """Consume a batch and store it; returns records read."""
        msgs = consume_batch(self.consumer, self.settings.kafka.consume_batch, 0.5)
        if msgs:
            self.process(msgs)
        return len(msgs)

    def run_forever(self) -> None:
        """Consume until `stop_event` is set."""
        self.consumer.subscribe([self.topic])
        log.info("bar sink: %s -> Redis %s", self.topic, self.settings.redis.url)
        try:
            run_steps(self.step, self.stop_event.is_set)
        finally:
            self.consumer.close()
