"""`tickwatch sink`: anomaly events from Kafka into the Redis store, batch by batch, idempotently.

The same process runs the bar sink (api/bar_sink.py) on a thread: recent bars for the charts.

Offsets are committed only after a batch is in Redis, so a crash replays the batch, and the store
write is idempotent, so the replay changes nothing (repeats are counted, not stored again). When
Redis is down the batch is retried until it lands. Malformed records, unconfigured symbols and
events older than the retention window go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, Message

from api.anomaly_store import AnomalyStore, WriteResult
from api.bar_sink import BarSink, sink_redis
from api.explanation_metrics import LatestExplanations
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import consume_batch, make_consumer, make_producer
from tickwatch.metrics import (
    DUPLICATES,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    LAST_EVENT_TS,
    Hop,
    serve_metrics,
)
from tickwatch.retry import REDIS_DOWN, Stopped, retrying
from tickwatch.schemas import AnomalyEvent, SchemaError, decode
from tickwatch.settings import Settings
from tickwatch.stage import (
    LagGauge,
    commit_consumed,
    observe_latencies,
    run_steps,
    stop_on_signals,
)
from tickwatch.topic_check import require_topics
from tickwatch.topics import ANOMALIES, BARS, DEAD_LETTER, topic_name

log = logging.getLogger(__name__)
STAGE = "sink"
GROUP = "tickwatch-sink"


def _redis_failed(exc: BaseException, delay: float) -> None:
    ERRORS.labels(STAGE, "redis").inc()
    log.warning("Redis write failed (%s); retrying in %.1fs", exc, delay)


class AnomalySink:
    """Consumes the anomalies topic and writes each batch to the store in one atomic call."""

    def __init__(self, settings: Settings, consumer: Consumer | None = None) -> None:
        self.settings = settings
        self.topic = topic_name(ANOMALIES, settings)
        self.consumer = consumer or make_consumer(settings, f"{settings.topic_prefix}{GROUP}")
        self.producer = make_producer(settings)
        self.dead_letters = DeadLetterSink(self.producer, settings, STAGE)
        self.store = AnomalyStore(sink_redis(settings), settings.api.anomaly_retention_days)
        self.symbols = frozenset(settings.symbols)
        self.latest = LatestExplanations()
        self.stop_event = threading.Event()
        self.lag = LagGauge(STAGE, self.consumer)

    def refuse(self, msg: Message, reason: str, kind: str) -> None:
        """Send one consumed message to the dead-letter topic with the reason."""
        self.dead_letters.send(
            msg.value() or b"",
            reason,
            kind=kind,
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            key=(msg.key() or b"").decode("utf-8", "replace"),
        )

    def decode_batch(self, msgs: list[Message]) -> list[tuple[AnomalyEvent, Message]]:
        """Valid events of configured symbols; the rest go to the dead-letter topic."""
        out = []
        for msg in msgs:
            try:
                event = decode(AnomalyEvent, msg.value() or b"")
            except SchemaError as exc:
                self.refuse(msg, str(exc), "schema")
                continue
            if event.symbol not in self.symbols:
                self.refuse(msg, f"symbol {event.symbol} is not configured", "unknown_symbol")
                continue
            out.append((event, msg))
        EVENTS_IN.labels(STAGE, "AnomalyEvent").inc(len(msgs))
        return out

    def write(self, events: list[AnomalyEvent]) -> WriteResult | None:
        """Store the batch, retrying with backoff while Redis is unavailable; None if stopped."""
        retry = retrying(REDIS_DOWN, _redis_failed, stop=self.stop_event)
        try:
            return retry(self.store.write_batch, events)
        except Stopped:
            return None

    def process(self, msgs: list[Message]) -> int:
        """Decode, store, dead-letter what retention refused, then commit; returns events added."""
        decoded = self.decode_batch(msgs)
        result = self.write([e for e, _ in decoded])
        if result is None:
            return 0  # stopping: not committed, the batch is read again on restart
        self.latest.update(e for e, _ in decoded if e.event_id not in result.expired)
        for event, msg in decoded:
            if event.event_id in result.expired:
                self.refuse(
                    msg, f"bar {event.bar_start_ms} is older than the retention window", "expired"
                )
        while self.producer.flush(30):  # dead letters acknowledged before the offsets move
            ERRORS.labels(STAGE, "dead_letter_flush").inc()
            log.warning("dead letters not acknowledged yet; holding the commit")
        commit_consumed(self.consumer, STAGE)
        repeats = len(decoded) - result.added - len(result.expired)
        if repeats:
            DUPLICATES.labels(STAGE, "already_stored").inc(repeats)
        if result.trimmed:
            log.info("retention: trimmed %d events", result.trimmed)
        EVENTS_OUT.labels(STAGE, "AnomalyEvent").inc(result.added)
        stored = [msg for e, msg in decoded if e.event_id not in result.expired]
        observe_latencies(STAGE, Hop.ANOMALIES_TO_STORE, (m for _, m in decoded), stored)
        if decoded:
            LAST_EVENT_TS.labels(STAGE).set(max(e.bar_start_ms for e, _ in decoded) / 1000)
        return result.added

    def step(self) -> int:
        """Consume a batch and store it; returns records read."""
        msgs = consume_batch(self.consumer, self.settings.kafka.consume_batch, 0.5)
        if msgs:
            self.process(msgs)
        self.lag.update()
        return len(msgs)

    def run_forever(self) -> None:
        """Consume until `stop_event` is set; commits after every stored batch."""
        self.consumer.subscribe([self.topic])
        log.info("sink: %s -> Redis %s", self.topic, self.settings.redis.url)
        try:
            run_steps(self.step, self.stop_event.is_set)
        finally:
            self.consumer.close()
            self.producer.flush(10)


def run(settings: Settings) -> None:
    """Serve sink metrics and run the anomaly and bar sinks until SIGINT/SIGTERM."""
    require_topics(settings, (ANOMALIES, BARS, DEAD_LETTER), "sink")
    serve_metrics(settings.prometheus.sink_metrics_port, "sink")
    sink, bars = AnomalySink(settings), BarSink(settings)

    def stop(*_: object) -> None:
        sink.stop_event.set()
        bars.stop_event.set()

    stop_on_signals(stop)
    bar_thread = threading.Thread(target=bars.run_forever, name="bar-sink", daemon=True)
    bar_thread.start()
    try:
        sink.run_forever()
    finally:
        stop()
        bar_thread.join(timeout=15)
