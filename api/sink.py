"""`tickwatch sink`: anomaly events from Kafka into the Redis store, batch by batch, idempotently.

The same process runs the bar sink (api/bar_sink.py) on a thread: recent bars for the charts.

Offsets are committed only after a batch is in Redis, so a crash replays the batch, and the store
write is idempotent, so the replay changes nothing (repeats are counted, not stored again). When
Redis is down the batch is retried until it lands. Malformed records, unconfigured symbols and
events older than the retention window go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import redis
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from api.bar_sink import BarSink
from api.explanation_metrics import LatestExplanations
from api.store import AnomalyStore, WriteResult
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import (
    INGEST_HEADER,
    appended_ms,
    consume_batch,
    make_consumer,
    make_producer,
)
from tickwatch.metrics import (
    CONSUMER_LAG,
    DUPLICATES,
    ERRORS,
    EVENT_TO_EMIT,
    EVENTS_IN,
    EVENTS_OUT,
    HOP_LATENCY,
    LAST_EVENT_TS,
    Hop,
    observe_since,
    serve_metrics,
)
from tickwatch.schemas import AnomalyEvent, SchemaError, decode
from tickwatch.settings import Settings
from tickwatch.topic_check import require_topics
from tickwatch.topics import ANOMALIES, BARS, DEAD_LETTER, topic_name

log = logging.getLogger(__name__)
STAGE = "sink"
GROUP = "tickwatch-sink"
LAG_EVERY_S = 5.0
MAX_RETRY_DELAY_S = 2.0


def ingest_ms(msg: Message) -> int | None:
    """The tw-ingest-ms header of a message, if present and numeric."""
    headers = msg.headers() or []  # a consumer returns a list; the stubs allow a dict too
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        if key == INGEST_HEADER and value:
            try:
                return int(value)
            except ValueError:
                return None
    return None


class AnomalySink:
    """Consumes the anomalies topic and writes each batch to the store in one atomic call."""

    def __init__(self, settings: Settings, consumer: Consumer | None = None) -> None:
        self.settings = settings
        self.topic = topic_name(ANOMALIES, settings)
        self.consumer = consumer or make_consumer(settings, f"{settings.topic_prefix}{GROUP}")
        self.producer = make_producer(settings)
        self.dead_letters = DeadLetterSink(self.producer, settings, STAGE)
        client = redis.Redis(
            settings.redis.host,
            settings.redis.port,
            db=settings.redis.db,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
        self.store = AnomalyStore(client, settings.api.anomaly_retention_days)
        self.symbols = frozenset(settings.symbols)
        self.latest = LatestExplanations()
        self.stop_event = threading.Event()
        self._lag_at = 0.0

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
        delay = 0.2
        while True:
            try:
                return self.store.write_batch(events)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                ERRORS.labels(STAGE, "redis").inc()
                log.warning("Redis write failed (%s); retrying in %.1fs", exc, delay)
                if self.stop_event.wait(delay):
                    return None
                delay = min(delay * 2, MAX_RETRY_DELAY_S)

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
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:  # e.g. the group rebalanced during a long Redis outage
            ERRORS.labels(STAGE, "commit").inc()
            log.warning("offset commit failed (%s); the batch will be read again, harmlessly", exc)
        repeats = len(decoded) - result.added - len(result.expired)
        if repeats:
            DUPLICATES.labels(STAGE, "already_stored").inc(repeats)
        if result.trimmed:
            log.info("retention: trimmed %d events", result.trimmed)
        EVENTS_OUT.labels(STAGE, "AnomalyEvent").inc(result.added)
        now = time.time()
        ingests = [ms for _, msg in decoded if (ms := ingest_ms(msg)) is not None]
        observe_since(EVENT_TO_EMIT.labels(STAGE), ingests, now)
        stored = [msg for e, msg in decoded if e.event_id not in result.expired]
        appended = [ms for msg in stored if (ms := appended_ms(msg)) is not None]
        observe_since(HOP_LATENCY.labels(Hop.ANOMALIES_TO_STORE), appended, now)
        if decoded:
            LAST_EVENT_TS.labels(STAGE).set(max(e.bar_start_ms for e, _ in decoded) / 1000)
        return result.added

    def update_lag(self) -> None:
        """Consumer lag per assigned partition (log end minus committed position)."""
        if time.monotonic() - self._lag_at < LAG_EVERY_S:
            return
        self._lag_at = time.monotonic()
        assigned = self.consumer.assignment()
        if not assigned:
            return
        try:
            for tp in self.consumer.position(assigned):
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=2, cached=False
                )
                pos = tp.offset if tp.offset >= 0 else 0
                CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(max(0, high - pos))
        except KafkaException as exc:  # e.g. no leader while the broker restarts: lag can wait
            log.debug("consumer lag unavailable: %s", exc)

    def run_forever(self) -> None:
        """Consume until `stop_event` is set; commits after every stored batch."""
        self.consumer.subscribe([self.topic])
        log.info("sink: %s -> Redis %s", self.topic, self.settings.redis.url)
        try:
            while not self.stop_event.is_set():
                msgs = consume_batch(self.consumer, self.settings.kafka.consume_batch, 0.5)
                if msgs:
                    self.process(msgs)
                self.update_lag()
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

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    bar_thread = threading.Thread(target=bars.run_forever, name="bar-sink", daemon=True)
    bar_thread.start()
    try:
        sink.run_forever()
    finally:
        stop()
        bar_thread.join(timeout=15)
