"""`tickwatch score`: consume feature vectors in batches, emit explained anomaly events.

Exactly-once per batch: the events, any dead letters and the consumer offsets go into one Kafka
transaction, so a restarted worker neither loses an event nor writes one twice. Per-symbol state
(LSTM sequences, cooldown) is rebuilt on partition assignment by re-scoring the messages just
before the committed offset, so a restarted worker scores exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import signal
import socket
import time

from confluent_kafka import Message, TopicPartition

from model_workers.model_watch import ModelWatcher, publish_model_info
from model_workers.scorer import Cooldown, Scorer, SequenceBuffer
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.features import MODEL_FEATURES
from tickwatch.kafka import (
    INGEST_HEADER,
    consume_batch,
    hang_watchdog,
    make_consumer,
    make_producer,
    produce,
)
from tickwatch.metrics import (
    ANOMALIES,
    ANOMALY_SCORE,
    CONSUMER_LAG,
    DUPLICATES,
    EVENT_TO_EMIT,
    EVENTS_IN,
    EVENTS_OUT,
    LAST_EVENT_TS,
    SCORED_BARS,
    serve_metrics,
)
from tickwatch.schemas import FeatureVector, SchemaError, decode, encode
from tickwatch.settings import Settings
from tickwatch.topic_check import require_topics
from tickwatch.topics import ANOMALIES as ANOMALIES_TOPIC
from tickwatch.topics import DEAD_LETTER, FEATURES, topic_name

log = logging.getLogger(__name__)
STAGE = "score"
REPLAY_MESSAGES = 50_000  # per partition; must cover (sequence + cooldown) bars of its symbols
LAG_EVERY_S = 5.0
TXN_WATCHDOG_S = 100.0  # > the 30 s + 60 s the commit calls may legitimately take


class ScoreWorker:
    """One member of the scoring consumer group."""

    def __init__(
        self,
        settings: Settings,
        instance: str | None = None,
        reload_interval_s: float = 10.0,
        replay_messages: int = REPLAY_MESSAGES,
    ) -> None:
        self.settings, self.replay_messages = settings, replay_messages
        self.scorer = Scorer.from_registry(settings)
        self.buffer = SequenceBuffer(self.scorer.length)
        self.cooldown = Cooldown(settings.model.cooldown_minutes)
        self.partition_of: dict[str, int] = {}
        self.topic = topic_name(FEATURES, settings)
        self.out_topic = topic_name(ANOMALIES_TOPIC, settings)
        self.group = f"{settings.topic_prefix}tickwatch-score"
        self.instance = instance or socket.gethostname()
        tid = f"{self.group}-{self.instance}"
        self.producer = make_producer(
            settings, **{"transactional.id": tid, "transaction.timeout.ms": 120_000}
        )
        self.producer.init_transactions(60)  # also aborts what a killed predecessor left open
        self.dead = DeadLetterSink(self.producer, settings, STAGE)
        # static membership: a restarted instance takes its partitions back at once instead of
        # waiting for the dead member's session to time out
        self.consumer = make_consumer(
            settings,
            self.group,
            **{"isolation.level": "read_committed", "group.instance.id": self.instance},
        )
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.watcher = ModelWatcher(settings, self.scorer, reload_interval_s)
        self.stopping = False
        self._lag_at = 0.0

    def run(self, max_idle_s: float | None = None) -> None:
        """Consume until stopped (SIGTERM/SIGINT) or idle for `max_idle_s`."""
        self.watcher.start()
        idle_since = time.monotonic()
        try:
            while not self.stopping:
                if self.step():
                    idle_since = time.monotonic()
                elif max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    break
        finally:
            self.close()

    def step(self) -> int:
        """Swap in a reloaded model if any, then process one batch; returns messages read."""
        self._swap_models()
        msgs = consume_batch(self.consumer, self.settings.kafka.consume_batch, 0.5)
        if msgs:
            self._process(msgs)
        if time.monotonic() - self._lag_at > LAG_EVERY_S:
            self._publish_lag()
        return len(msgs)

    def close(self) -> None:
        self.watcher.stop()
        self.consumer.close()

    def _swap_models(self) -> None:
        new = self.watcher.take()
        if new is None:
            return
        publish_model_info(new, self.scorer)
        if new.length != self.buffer.length:
            log.warning(
                "sequence length changed %d -> %d: LSTM history restarts",
                self.buffer.length,
                new.length,
            )
            self.buffer = SequenceBuffer(new.length)
        self.scorer = new
        log.info("scoring with %s", new.version)

    def _process(self, msgs: list[Message]) -> None:
        """Score one batch and commit events, dead letters and offsets in one transaction."""
        EVENTS_IN.labels(STAGE, "FeatureVector").inc(len(msgs))
        self.producer.begin_transaction()
        try:
            vectors, sources = self._accept(msgs, live=True)
            events = self._score(vectors, sources, emit=True)
            offsets = {}
            for m in msgs:
                offsets[m.partition()] = max(offsets.get(m.partition(), -1), m.offset() + 1)
            with hang_watchdog(TXN_WATCHDOG_S, "transaction commit"):
                self.producer.send_offsets_to_transaction(
                    [TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                    self.consumer.consumer_group_metadata(),
                    30,
                )
                self.producer.commit_transaction(60)
        except Exception:
            log.exception("batch failed: aborting the transaction; offsets stay uncommitted")
            self.producer.abort_transaction(60)
            raise
        now = time.time()
        for ingest_ms in events:
            if ingest_ms is not None:
                EVENT_TO_EMIT.labels(STAGE).observe(max(0.0, now - ingest_ms / 1000))
        EVENTS_OUT.labels(STAGE, "AnomalyEvent").inc(len(events))
        if vectors:
            LAST_EVENT_TS.labels(STAGE).set(max(v.bar_start_ms for v in vectors) / 1000)

    def _accept(self, msgs: list[Message], live: bool) -> tuple[list[FeatureVector], list[Message]]:
        """Decoded, complete, new vectors; the rest go to the dead-letter topic (when live)."""
        vectors, sources, latest = [], [], {}
        for m in msgs:
            reason, kind, v = None, "invalid", None
            try:
                v = decode(FeatureVector, m.value() or b"")
            except SchemaError as exc:
                reason = str(exc)
            if v is not None:
                missing = [k for k in MODEL_FEATURES if k not in v.features]
                prev = latest.get(v.symbol)
                if missing:
                    reason, kind = f"missing model features {missing}", "missing_features"
                elif (prev is not None and v.bar_start_ms <= prev) or not self.buffer.is_new(
                    v.symbol, v.bar_start_ms
                ):
                    reason, kind = f"{v.symbol} bar {v.bar_start_ms} already scored", "duplicate"
            if reason is None and v is not None:
                latest[v.symbol] = v.bar_start_ms
                self.partition_of[v.symbol] = m.partition()
                vectors.append(v)
                sources.append(m)
            elif live:
                if kind == "duplicate":
                    DUPLICATES.labels(STAGE, kind).inc()
                key = m.key().decode(errors="replace") if m.key() else None
                self.dead.send(
                    m.value() or b"",
                    reason or "undecodable",
                    kind=kind,
                    topic=m.topic(),
                    partition=m.partition(),
                    offset=m.offset(),
                    key=key,
                )
        return vectors, sources

    def _score(
        self, vectors: list[FeatureVector], sources: list[Message], emit: bool
    ) -> list[int | None]:
        """Score in one call per model; produce an event per new anomaly when `emit`.

        Returns the ingest time (header) of each emitted event's source vector.
        """
        rows = self.scorer.score(vectors, self.buffer)
        events = []
        for row, m in zip(rows, sources, strict=True):
            if not row.flagged or not self.cooldown.admit(row.symbol, row.bar_start_ms):
                continue
            if not emit:
                continue
            event = self.scorer.to_event(row, int(time.time() * 1000))
            ingest = _ingest_ms(m)
            headers = [(INGEST_HEADER, str(ingest).encode())] if ingest is not None else None
            produce(
                self.producer, self.out_topic, encode(event), key=event.event_id, headers=headers
            )
            flagged_by = "+".join(s.model for s in row.model_scores if s.flagged) or "rule"
            ANOMALIES.labels(row.symbol, flagged_by, event.severity).inc()
            events.append(ingest)
        if emit:
            for row in rows:
                for s in row.model_scores:
                    ANOMALY_SCORE.labels(s.model).observe(s.score)
            for model in ("iforest", "lstm_ae"):
                SCORED_BARS.labels(model).inc(
                    sum(1 for r in rows if any(s.model == model for s in r.model_scores))
                )
        return events

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        """Rebuild the assigned partitions' sequences and cooldowns from before the commit."""
        self._forget({p.partition for p in partitions})
        committed = consumer.committed(partitions, timeout=60)
        replayed = self._replay([tp for tp in committed if tp.offset >= 0])
        log.info(
            "assigned %s; rebuilt state from %d earlier vectors",
            sorted(p.partition for p in partitions),
            replayed,
        )

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        self._forget({p.partition for p in partitions})

    def _forget(self, partitions: set[int]) -> None:
        for sym in [s for s, p in self.partition_of.items() if p in partitions]:
            del self.partition_of[sym]
            self.buffer.forget(sym)
            self.cooldown.last_flag.pop(sym, None)

    def _replay(self, committed: list[TopicPartition]) -> int:
        """Re-score up to `replay_messages` per partition before the committed offsets, silently."""
        reader = make_consumer(
            self.settings, f"{self.group}-rebuild", **{"isolation.level": "read_committed"}
        )
        ends, starts = {}, []
        for tp in committed:
            low, _high = reader.get_watermark_offsets(tp, timeout=30)
            start = max(low, tp.offset - self.replay_messages)
            if start < tp.offset:
                ends[tp.partition] = tp.offset
                starts.append(TopicPartition(self.topic, tp.partition, start))
        replayed = 0
        if starts:
            reader.assign(starts)
        while ends:
            msgs = consume_batch(reader, self.settings.kafka.consume_batch, 1.0)
            keep = [m for m in msgs if m.offset() < ends.get(m.partition(), -1)]
            for m in msgs:
                if m.partition() in ends and m.offset() >= ends[m.partition()] - 1:
                    del ends[m.partition()]
            vectors, sources = self._accept(keep, live=False)
            self._score(vectors, sources, emit=False)
            replayed += len(vectors)
        reader.close()
        return replayed

    def _publish_lag(self) -> None:
        self._lag_at = time.monotonic()
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=5)
                lag = high - tp.offset if tp.offset >= 0 else high
                CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(max(lag, 0))
        except Exception:  # lag is informational; never stop scoring for it
            log.debug("consumer lag unavailable", exc_info=True)


def _ingest_ms(m: Message) -> int | None:
    for k, v in m.headers() or []:
        if k == INGEST_HEADER and v:
            try:
                return int(v)
            except ValueError:
                return None
    return None


def run(
    settings: Settings,
    instance: str | None = None,
    reload_interval_s: float = 10.0,
    max_idle_s: float | None = None,
) -> None:
    """Serve metrics and score until SIGTERM/SIGINT (or `max_idle_s` without input)."""
    require_topics(settings, (FEATURES, ANOMALIES_TOPIC, DEAD_LETTER), "score")
    serve_metrics(settings.prometheus.score_metrics_port, "score")
    worker = ScoreWorker(settings, instance, reload_interval_s)

    def _stop(signum: int, frame: object) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("scoring %s -> %s with %s", worker.topic, worker.out_topic, worker.scorer.version)
    worker.run(max_idle_s)
