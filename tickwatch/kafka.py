"""Kafka clients for every service: idempotent acks=all producers, batch consumers, topics."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaError, KafkaException, Message, Producer
from confluent_kafka import Consumer as _Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from tickwatch.settings import Settings
from tickwatch.topics import ALL_TOPICS, TopicSpec, partitions_for, topic_name

log = logging.getLogger(__name__)

# Wall-clock ms at which the producer received the upstream event; every stage copies it to its
# outputs so pipeline latency (ingest -> this stage's output) is measurable with any event clock.
INGEST_HEADER = "tw-ingest-ms"

DeliveryCallback = Callable[[KafkaError | None, Message], None]
# record headers as confluent_kafka's produce() takes them
Headers = list[tuple[str, str | bytes | None]]
# librdkafka retries a failed send (broker down, leader moving, topic missing) for this long
# before it reports the message as failed: then the service stops rather than lose it
DELIVERY_TIMEOUT_MS = 120_000
# room kept under kafka.max_message_bytes for a record's key, headers and framing
RECORD_OVERHEAD_BYTES = 4096


# a report the application asked for (purge() before closing), not a failed delivery
PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


class DeliveryFailed(SystemExit):
    """A message still undelivered after librdkafka's retries: the service exits 1 with why.

    A SystemExit, so no `except Exception` on the way up turns the loss into a log line."""

    def __init__(self, err: KafkaError, topic: str | None) -> None:
        super().__init__(
            f"error: delivery to topic {topic} failed: {err.str()} (retriable errors are "
            f"retried for {DELIVERY_TIMEOUT_MS // 1000} s); stopping so nothing is lost "
            "silently. Is the topic there (`tickwatch stack topics` creates it) and the broker "
            "reachable?"
        )


def stop_on_delivery_error(err: KafkaError | None, msg: Message) -> None:
    """The default delivery callback of non-transactional producers: raise on a failure.

    librdkafka raises it again from the poll or flush that served the report."""
    if err is not None and err.code() not in PURGED:
        failed = DeliveryFailed(err, msg.topic())
        log.critical("%s", failed.code)
        raise failed


def producer_config(settings: Settings, **overrides: object) -> dict[str, object]:
    """Idempotent, acks=all, compressed, batched producer settings.

    Without a transactional id or an `on_delivery` of its own, a failed delivery stops the
    service (`stop_on_delivery_error`); a transactional producer's failures abort its
    transaction instead, which the stage retries."""
    cfg: dict[str, object] = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.kafka.compression,
        "linger.ms": settings.kafka.linger_ms,
        "batch.size": settings.kafka.batch_size,
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "message.max.bytes": settings.kafka.max_message_bytes,
    }
    if "transactional.id" not in overrides and "on_delivery" not in overrides:
        cfg["on_delivery"] = stop_on_delivery_error
        cfg["delivery.report.only.error"] = True  # no Python call per acknowledged message
    cfg.update(overrides)
    return cfg


def consumer_config(settings: Settings, group_id: str, **overrides: object) -> dict[str, object]:
    """Consumer settings: manual commits after processing, read from the beginning."""
    cfg: dict[str, object] = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": settings.kafka.fetch_wait_ms,
    }
    cfg.update(overrides)
    return cfg


def make_producer(settings: Settings, **overrides: object) -> Producer:
    return Producer(producer_config(settings, **overrides))


def make_consumer(settings: Settings, group_id: str, **overrides: object) -> _Consumer:
    return _Consumer(consumer_config(settings, group_id, **overrides))


def produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | str | None = None,
    timestamp_ms: int | None = None,
    on_delivery: DeliveryCallback | None = None,
    headers: Headers | None = None,
    partition: int | None = None,
) -> None:
    """Produce one message; when the local queue is full, serve callbacks and retry (never drop).

    On the hot paths of the stages (a call per record), so one call with fixed arguments:
    partition -1 is librdkafka's "use the partitioner", timestamp 0 its "now"."""
    extra = {} if on_delivery is None else {"on_delivery": on_delivery}
    while True:
        try:
            producer.produce(
                topic,
                value,
                key,
                partition=-1 if partition is None else partition,
                timestamp=timestamp_ms or 0,
                headers=headers or None,
                **extra,
            )
            return
        except BufferError:
            producer.poll(0.05)


def appended_ms(msg: Message) -> int | None:
    """When the broker appended a consumed (or delivered) record, in Unix ms; None unless its
    topic stamps arrival (LogAppendTime: a producer-set timestamp is event time, not latency)."""
    kind, ms = msg.timestamp()
    return ms if kind == TIMESTAMP_LOG_APPEND_TIME else None


def partition_offset(msg: Message) -> tuple[int, int]:
    """A consumed record's (partition, offset): librdkafka sets both on every record a consumer
    returns (the stubs say Optional because a Message built by hand may lack them)."""
    partition, offset = msg.partition(), msg.offset()
    if partition is None or offset is None:
        raise ValueError(f"not a consumed record: partition {partition}, offset {offset}")
    return partition, offset


def flush_or_raise(producer: Producer, timeout_s: float = 60.0) -> None:
    """Flush and fail loudly if anything is still undelivered."""
    left = producer.flush(timeout_s)
    if left:
        raise KafkaException(f"{left} messages still undelivered after {timeout_s}s")


def consume_batch(
    consumer: _Consumer,
    max_messages: int,
    timeout_s: float,
    linger_s: float = 0.0,
    gap_s: float = 0.005,
) -> list[Message]:
    """Up to `max_messages` good messages: those the client already holds, else the first to
    arrive within `timeout_s` and whatever came with it; partition-EOF events skipped, fatal
    errors raised.

    It never waits to fill a batch: librdkafka's `consume(n, timeout)` returns early only with
    n messages, so under a light load every record waited out the whole timeout (half a second
    in the score worker: the `features_to_anomalies` hop's median). With `linger_s`, a batch
    that has begun goes on taking records while they keep coming (none for `gap_s` ends it), for
    at most `linger_s`: a burst (a whole market's minute) is one batch, not dozens of small ones
    each paying a transaction, and a lone record waits `gap_s` more, not the linger."""
    msgs = consumer.consume(max_messages, 0)
    if not msgs and timeout_s > 0:
        first = consumer.poll(timeout_s)
        if first is not None:
            msgs = [first, *(consumer.consume(max_messages - 1, 0) if max_messages > 1 else [])]
    if msgs and linger_s > 0:
        end = time.monotonic() + linger_s
        while len(msgs) < max_messages and (left := end - time.monotonic()) > 0:
            more = consumer.consume(max_messages - len(msgs), min(gap_s, left))
            if not more:
                break
            msgs += more
    out = []
    for m in msgs:
        err = m.error()
        if err is None:
            out.append(m)
        elif err.code() != KafkaError._PARTITION_EOF:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
    return out


def read_latest(settings: Settings, topic: str, partitions: list[int]) -> dict[bytes, bytes | None]:
    """The last committed value of every key on these partitions of a compacted topic (None for
    a tombstone), read from the beginning to the end the broker reports now."""
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    latest: dict[bytes, bytes | None] = {}
    if not partitions:
        return latest
    consumer = make_consumer(
        settings, f"state-reader-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    try:
        ends: dict[int, int] = {}
        tps = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                ends[p] = high
                tps.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        if tps:
            consumer.assign(tps)
            while ends:
                for msg in consume_batch(consumer, 5000, 1.0):
                    key, (partition, offset) = msg.key(), partition_offset(msg)
                    if key is not None:  # always: a compacted topic refuses keyless records
                        latest[key] = msg.value()
                    if offset + 1 >= ends.get(partition, 0):
                        ends.pop(partition, None)
                # partitions whose position reached the end (transaction markers are not
                # messages, so the last record may sit below the high watermark)
                if ends:
                    for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                        if tp.offset >= ends[tp.partition]:
                            ends.pop(tp.partition, None)
    finally:
        consumer.close()
    return latest


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] = ALL_TOPICS, timeout_s: float = 30.0
) -> list[str]:
    """Create missing topics with their configured layout and set drifted topic settings of
    existing ones (e.g. a retention or timestamp type changed since they were created); a
    partition count unlike the spec is logged, never changed. Returns the topics created."""
    from tickwatch.topic_check import align_configs, inspect_topics

    specs = list(specs)
    client = admin(settings)
    existing = set(client.list_topics(timeout=timeout_s).topics)
    new = [
        NewTopic(
            topic_name(s, settings),
            num_partitions=partitions_for(s, settings),
            replication_factor=1,
            config=s.config(),
        )
        for s in specs
        if topic_name(s, settings) not in existing
    ]
    created = []
    if new:
        for name, fut in client.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        _wait_for_metadata(client, [t.topic for t in new], timeout_s)
    report = inspect_topics(client, settings, specs, timeout_s)
    align_configs(client, report, timeout_s)
    for line in report.partitions:
        log.warning("%s", line)
    deadline = time.monotonic() + timeout_s
    while report.configs:  # the broker shows new settings a moment after accepting them
        if time.monotonic() > deadline:
            raise KafkaException(f"topic settings not visible after {timeout_s}s: {report.lines()}")
        time.sleep(0.2)
        report = inspect_topics(client, settings, specs, timeout_s)
    return created


def _wait_for_metadata(client: AdminClient, names: list[str], timeout_s: float) -> None:
    """Block until the broker's metadata lists every topic with leaders for all partitions."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = client.list_topics(timeout=timeout_s).topics
        ready = all(
            n in topics
            and topics[n].partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
            for n in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise KafkaException(f"topics not visible in metadata after {timeout_s}s: {names}")
        time.sleep(0.2)


def wait_for_broker(bootstrap: str, timeout_s: float = 60.0) -> bool:
    """True once a metadata request succeeds."""
    deadline = time.monotonic() + timeout_s
    client = AdminClient({"bootstrap.servers": bootstrap})
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=2)
            return True
        except KafkaException:
            time.sleep(0.5)
    return False


def delete_prefixed_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with the (non-empty) topic prefix: the registry's
    topics and those the stages made (Faust changelogs, the batch engine's state); waits for
    the broker, so nothing is left behind when the client goes away."""
    prefix = settings.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete topics without a topic prefix")
    client = admin(settings)
    names = [t for t in client.list_topics(timeout=timeout_s).topics if t.startswith(prefix)]
    if names:
        for name, fut in client.delete_topics(names, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.warning("could not delete topic %s: %s", name, exc.args[0])
    return names


EXIT_HUNG = 75  # EX_TEMPFAIL: the supervisor restarts the worker


@contextmanager
def hang_watchdog(seconds: float, what: str) -> Iterator[None]:
    """Exit the process (code 75) if the block hangs past `seconds`.

    librdkafka's send_offsets_to_transaction can block past its own timeout when the group
    coordinator restarts (confluentinc/librdkafka#5456), and nothing in the process can unblock
    it. A restarted worker's init_transactions aborts the open transaction, and it resumes from
    what was committed.
    """
    timer = threading.Timer(seconds, _exit_hung, (seconds, what, int(time.time() * 1000)))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _exit_hung(seconds: float, what: str, since_ms: int) -> None:
    log.critical(
        "WATCHDOG: %s hung for %.0fs (since %d ms, librdkafka#5456); exiting %d so the "
        "supervisor restarts the worker",
        what,
        seconds,
        since_ms,
        EXIT_HUNG,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_HUNG)
