"""The stage loop, once for every consuming stage: batch consume, process, produce, commit.

`TransactionalLoop` is the exactly-once loop of the score worker and the batch features engine:
consume a batch, begin a Kafka transaction, let the stage's `process` callback produce its
outputs (events, feature vectors, state changelogs, dead letters) into it, send the consumed
offsets to the transaction, commit. One policy for what goes wrong, under the hang watchdog:

- a retriable error of a transaction call (a broker restart) is retried for `TXN_RETRY_S`;
- an error that is not fatal (abortable, or still failing after the retries) aborts the
  transaction and rewinds: every assigned partition goes back to its committed offset and the
  stage reloads its state as committed together with those offsets (`rewind`, usually the
  stage's own on-assign handler); the loop goes on;
- a fatal error (another instance took over the transactional id) exits with code 75 for the
  supervisor, whose restart resumes from what was committed;
- a call blocked past its timeout (librdkafka#5456) is ended by the watchdog: exit 75 as well.

The non-transactional sinks (Redis writes, then a plain commit) share the rest: the loop with its
one SIGTERM path (`run_steps`, `stop_on_signals`), the lag gauges (`LagGauge`), the
ingest-latency header (`ingest_ms`, `ingest_headers`, `observe_latencies`) and the watchdog.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from tickwatch.kafka import (
    EXIT_HUNG,
    INGEST_HEADER,
    Headers,
    appended_ms,
    consume_batch,
    hang_watchdog,
    make_producer,
    partition_offset,
)
from tickwatch.metrics import (
    CONSUMER_LAG,
    ERRORS,
    EVENT_TO_EMIT,
    EVENTS_IN,
    HOP_LATENCY,
    Hop,
    observe_since,
)
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
# a burst (a whole market's minute) is read as one batch while its records keep coming, for at
# most this long; a lone record waits consume_batch's 5 ms gap more, not this
BURST_LINGER_S = 0.2

TXN_TIMEOUT_MS = 120_000  # the broker aborts a transaction left open longer (a dead worker's)
TXN_CALL_S = 15.0  # timeout of one send_offsets / commit call (retried while retriable)
TXN_WATCHDOG_S = 45.0  # a call blocked past its timeout (librdkafka#5456): exit for a restart
TXN_RETRY_S = 60.0  # how long a retriable failure of one call is retried before the rewind
TXN_RETRY_PAUSE_S = 0.5
# librdkafka's backoff before it resends a transaction request (default 100 ms). A transaction
# begun while the coordinator still completes the previous one (a minute's vectors read in two
# steps) is answered CONCURRENT_TRANSACTIONS and resent after it: send_offsets_to_transaction
# took up to 108 ms in the score stage at real time. The Java producer resends those after 20 ms.
TXN_RETRY_BACKOFF_MS = 20
ABORT_S = 60.0
EXIT_RESTART = EXIT_HUNG  # EX_TEMPFAIL: restart from what Kafka committed
LAG_EVERY_S = 5.0
COMMIT_WATCHDOG_S = 100.0  # a sink's commit blocked this long (no coordinator) exits 75

Rewind = Callable[[Consumer, list[TopicPartition]], None]


def transactional_producer(settings: Settings, transactional_id: str) -> Producer:
    """A transactional producer, initialised: this fences a killed predecessor with the same id
    and aborts the transaction it left open."""
    producer = make_producer(
        settings,
        **{
            "transactional.id": transactional_id,
            "transaction.timeout.ms": TXN_TIMEOUT_MS,
            "retry.backoff.ms": TXN_RETRY_BACKOFF_MS,
        },
    )
    producer.init_transactions(60)
    return producer


def _nothing() -> None:
    return None


@dataclass
class Outcome:
    """What a stage's `process` callback left in the open transaction, and its hooks.

    `before_commit`: after the offsets joined the transaction, before the commit (e.g. wait for
    an idempotent side write begun during `process`); `committed`: after the commit (output
    counters, latencies, gauges); `aborted`: the transaction is being aborted (e.g. join a side
    write still in flight); the rewind follows.
    """

    before_commit: Callable[[], None] = _nothing
    committed: Callable[[], None] = _nothing
    aborted: Callable[[], None] = _nothing


Process = Callable[[list[Message], dict[int, int]], Outcome]


def next_offsets(msgs: Iterable[Message]) -> dict[int, int]:
    """Partition -> the offset after the last message read from it (what a commit stores)."""
    offsets: dict[int, int] = {}
    for m in msgs:
        p, offset = partition_offset(m)
        offsets[p] = max(offsets.get(p, -1), offset + 1)
    return offsets


class TransactionalLoop:
    """Consume -> process -> produce -> send offsets -> commit, for one consumer and one
    transactional producer reading one topic (see the module doc for the error policy)."""

    def __init__(
        self,
        stage: str,
        producer: Producer,
        consumer: Consumer,
        topic: str,
        *,
        batch: int,
        poll_s: float,
        record_type: str,
        rewind: Rewind,
        linger_s: float = 0.0,
    ) -> None:
        self.stage = stage
        self.producer = producer
        self.consumer = consumer
        self.topic = topic
        self.batch = max(1, batch)
        self.poll_s = poll_s
        self.linger_s = linger_s
        self.record_type = record_type
        self.rewind = rewind
        self.lag = LagGauge(stage, consumer)
        self.stopping = False

    def consume(self) -> list[Message]:
        """Up to `batch` messages, waiting up to `poll_s` for the first; a batch that has begun
        takes records while they keep coming, for at most `linger_s` (`consume_batch`)."""
        return consume_batch(self.consumer, self.batch, self.poll_s, self.linger_s)

    def step(self, process: Process) -> int:
        """Consume a batch and, if there is one, transact it; update the lag gauges.

        Returns the messages read into a committed transaction (0 if none or rewound)."""
        msgs = self.consume()
        done = len(msgs) if msgs and self.transact(msgs, process) else 0
        self.lag.update()
        return done

    def transact(self, msgs: list[Message], process: Process) -> bool:
        """One transaction: `process(msgs, next offsets)` produces into it, then the offsets of
        `msgs` (if any) join it and it commits. False if it was aborted and rewound."""
        offsets = next_offsets(msgs)
        try:
            self.producer.begin_transaction()
            outcome = process(msgs, offsets)
        except KafkaException as exc:  # e.g. produce() on a producer whose transaction failed
            self._failed(exc, _nothing)
            return False
        except BaseException:
            log.exception("%s: batch failed; aborting its transaction", self.stage)
            self._abort_quietly()
            raise
        if offsets:
            tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
            meta = self.consumer.consumer_group_metadata()
            send = self.producer.send_offsets_to_transaction
            if not self._call(lambda: send(tps, meta, TXN_CALL_S), outcome.aborted):
                return False
        outcome.before_commit()
        if not self._call(lambda: self.producer.commit_transaction(TXN_CALL_S), _nothing):
            return False
        EVENTS_IN.labels(self.stage, self.record_type).inc(len(msgs))
        outcome.committed()
        return True

    def _call(self, call: Callable[[], None], aborted: Callable[[], None]) -> bool:
        """Run a transaction call under the watchdog, retrying retriable errors (a broker
        restart) for up to TXN_RETRY_S; then abort and rewind (False); exit 75 if fatal."""
        deadline = time.monotonic() + TXN_RETRY_S
        while True:
            try:
                with hang_watchdog(TXN_WATCHDOG_S, "transaction call"):
                    call()
                return True
            except KafkaException as exc:
                err = _error(exc)
                retriable = err is not None and err.retriable() and not err.fatal()
                if retriable and time.monotonic() < deadline:
                    ERRORS.labels(self.stage, "kafka").inc()
                    log.warning("%s: transaction call failed (%s); retrying", self.stage, err)
                    time.sleep(TXN_RETRY_PAUSE_S)
                    continue
                self._failed(exc, aborted)
                return False

    def _failed(self, exc: KafkaException, aborted: Callable[[], None]) -> None:
        """A fatal error exits for a restart; any other aborts the batch and rewinds."""
        err = _error(exc)
        ERRORS.labels(self.stage, "kafka").inc()
        if err is not None and err.fatal():
            log.error(
                "%s: transaction failed for good (%s); exiting for a restart", self.stage, err
            )
            raise SystemExit(EXIT_RESTART) from exc
        log.warning("%s: batch aborted (%s); rewinding to the committed state", self.stage, exc)
        aborted()
        self._rewind()

    def _rewind(self) -> None:
        """Abort the open transaction; seek every assigned partition to its committed offset and
        let the stage reload its state as committed with them."""
        try:
            self.producer.abort_transaction(ABORT_S)
        except KafkaException as exc:
            log.error("%s: abort failed (%s); exiting for a restart", self.stage, exc.args[0])
            raise SystemExit(EXIT_RESTART) from exc
        assignment = self.consumer.assignment()
        if assignment:
            for tp in self.consumer.committed(assignment, timeout=60):
                tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(tp)
        self.rewind(self.consumer, assignment)

    def _abort_quietly(self) -> None:
        try:
            self.producer.abort_transaction(ABORT_S)
        except Exception:  # the error being raised matters more; a restart aborts it anyway
            log.exception("%s: abort failed too", self.stage)


def _error(exc: KafkaException) -> KafkaError | None:
    """The KafkaError a confluent-kafka exception carries (None for a message-only one)."""
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


class LagGauge:
    """`tickwatch_consumer_lag{stage,topic,partition}` of a consumer's assignment, at most every
    LAG_EVERY_S: the log end minus the consumer's position.

    The log end is the one the consumer's own fetch responses carry (librdkafka's cached
    watermark), never a query: a ListOffsets round trip per partition in the stage's loop held
    each record behind it, up to seconds on a busy 2-core machine (the score stage's p99)."""

    def __init__(self, stage: str, consumer: Consumer, every_s: float = LAG_EVERY_S) -> None:
        self.stage = stage
        self.consumer = consumer
        self.every_s = every_s
        self._at = 0.0

    def update(self) -> None:
        if time.monotonic() - self._at < self.every_s:
            return
        self._at = time.monotonic()
        try:
            assigned = self.consumer.assignment()
            if not assigned:
                return
            for tp in self.consumer.position(assigned):
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), cached=True
                )
                if high < 0:  # not fetched from yet: no log end known without a query
                    continue
                pos = tp.offset if tp.offset >= 0 else 0
                CONSUMER_LAG.labels(self.stage, tp.topic, str(tp.partition)).set(max(0, high - pos))
        except KafkaException as exc:  # e.g. no leader while the broker restarts: lag can wait
            log.debug("%s: consumer lag unavailable: %s", self.stage, exc)


def commit_consumed(consumer: Consumer, stage: str) -> None:
    """Commit a sink's consumed offsets (its writes are idempotent) under the hang watchdog; a
    failed commit (the group rebalanced during a long outage) is counted and logged: the batch
    is read again, harmlessly."""
    try:
        with hang_watchdog(COMMIT_WATCHDOG_S, "offset commit"):
            consumer.commit(asynchronous=False)
    except KafkaException as exc:
        ERRORS.labels(stage, "commit").inc()
        log.warning("offset commit failed (%s); the batch will be read again, harmlessly", exc)


def ingest_ms(msg: Message) -> int | None:
    """The record's ingest header (wall-clock ms the pipeline received its upstream event), if
    present and numeric."""
    headers = msg.headers() or []  # a consumer returns a list; the stubs allow a dict too
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        if key == INGEST_HEADER and value:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def ingest_headers(msg: Message) -> Headers | None:
    """The headers carrying a consumed record's ingest time over to an output produced from it."""
    ms = ingest_ms(msg)
    return [(INGEST_HEADER, str(ms).encode())] if ms is not None else None


def observe_latencies(
    stage: str,
    hop: Hop,
    sources: Iterable[Message],
    hop_sources: Iterable[Message] | None = None,
    now_s: float | None = None,
) -> None:
    """Once their outputs are acknowledged: ingest-to-emit of `sources` (their ingest header)
    and the hop latency of `hop_sources` (default `sources`; their append to the input topic)."""
    now = time.time() if now_s is None else now_s
    sources = list(sources)
    observe_since(
        EVENT_TO_EMIT.labels(stage), [ms for m in sources if (ms := ingest_ms(m)) is not None], now
    )
    observe_hop(hop, sources if hop_sources is None else hop_sources, now)


def observe_hop(hop: Hop, sources: Iterable[Message], now_s: float | None = None) -> None:
    """The hop latency of `sources` once their outputs are acknowledged: from each one's append
    to its input topic (records of a topic without LogAppendTime are skipped)."""
    now = time.time() if now_s is None else now_s
    observe_since(
        HOP_LATENCY.labels(hop), [ms for m in sources if (ms := appended_ms(m)) is not None], now
    )


def stop_on_signals(stop: Callable[[], Any]) -> None:
    """SIGTERM and SIGINT call `stop`: the stage finishes the batch in hand, closes its clients
    and returns (what it committed is where its successor starts)."""

    def handler(signum: int, frame: object) -> None:
        log.info("signal %d: stopping after this batch", signum)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


# A stage allocates a few container objects per record; with the default gen-0 threshold (700)
# the cyclic GC ran every few dozen records and its older generations walked every long-lived
# object (the features' per-symbol state: a fifth of the step; the score stage's TensorFlow
# graphs and Keras objects: a pause of its own). That state is long-lived, so it is frozen out
# of the collector once loaded (`freeze_long_lived`), and collections run 14x less often.
GC_THRESHOLDS = (10_000, 10, 10)


def collect_rarely() -> None:
    """The stages' collector cadence (GC_THRESHOLDS): set once when a stage starts running."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_long_lived(collect: bool = True) -> None:
    """Move what exists now (loaded state, models) out of the collector's walks; `collect`
    first thaws what an earlier call froze and frees what is garbage (a replaced model, a
    revoked partition's state): a full collection, for where a pause is expected (an
    assignment, a model swap), never per record."""
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


def run_steps(
    step: Callable[[], int | None],
    stopped: Callable[[], bool],
    max_idle_s: float | None = None,
) -> None:
    """Call `step` (returns records read) until `stopped()` or `max_idle_s` without input."""
    idle_since = time.monotonic()
    while not stopped():
        if step():
            idle_since = time.monotonic()
        elif max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
            return
