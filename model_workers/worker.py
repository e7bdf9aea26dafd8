"""`tickwatch score`: consume feature vectors in batches, emit explained anomaly events.

Exactly-once per batch: the events, any dead letters and the consumer offsets go into one Kafka
transaction, so a restarted worker neither loses an event nor writes one twice. Each symbol's
online threshold (weeks of sessions) is written to a compacted changelog in the same transaction
when a session ends and at least hourly in event time, with the symbol's last flag; on partition
assignment the worker loads it (the cooldown resumes from that flag), then rebuilds the
short-lived state (LSTM sequences, the counts and flags since the snapshot) by re-scoring the
messages before the committed offset, from the oldest snapshot at the latest, so a restarted
worker scores exactly as an uninterrupted one. The loop is tickwatch.stage's
TransactionalLoop: a transaction that cannot commit (a broker restart outlasting the retries) is
aborted and rewound the same way, in the running worker.
"""

from __future__ import annotations

import json
import logging
import socket
import time

from confluent_kafka import Message, TopicPartition

from detection.scorer import REQUIRED_FEATURES, Cooldown, Scorer, SequenceBuffer
from model_workers.model_watch import ModelWatcher, publish_model_info
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import (
    consume_batch,
    ensure_topics,
    make_consumer,
    partition_offset,
    produce,
    read_latest,
)
from tickwatch.metrics import (
    ANOMALIES,
    ANOMALY_SCORE,
    DUPLICATES,
    EVENTS_OUT,
    LAST_EVENT_TS,
    SCORED_BARS,
    Hop,
    serve_metrics,
)
from tickwatch.schemas import FeatureVector, SchemaError, decode, encode
from tickwatch.settings import Settings
from tickwatch.stage import (
    BURST_LINGER_S,
    Outcome,
    TransactionalLoop,
    collect_rarely,
    freeze_long_lived,
    ingest_headers,
    observe_hop,
    observe_latencies,
    run_steps,
    stop_on_signals,
    transactional_producer,
)
from tickwatch.topic_check import require_topics
from tickwatch.topics import ANOMALIES as ANOMALIES_TOPIC
from tickwatch.topics import DEAD_LETTER, FEATURES, TopicSpec, partitions_for, topic_name

log = logging.getLogger(__name__)
STAGE = "score"
SNAPSHOT_EVERY_MS = 3_600_000  # event time between two snapshots of a symbol's threshold


class ScoreWorker:
    """One member of the scoring consumer group."""

    def __init__(
        self,
        settings: Settings,
        instance: str | None = None,
        reload_interval_s: float = 10.0,
    ) -> None:
        self.settings, self.replay_messages = settings, settings.model.replay_messages
        self.scorer = Scorer.from_registry(settings)
        self.scorer.warm_up()
        self.buffer = SequenceBuffer(self.scorer.length)
        self.cooldown = Cooldown(settings.model.cooldown_minutes)
        self.partition_of: dict[str, int] = {}
        self.topic = topic_name(FEATURES, settings)
        self.out_topic = topic_name(ANOMALIES_TOPIC, settings)
        self.group = f"{settings.topic_prefix}tickwatch-score"
        self.threshold_topic = ensure_threshold_topic(self.group, settings)
        self.snapshot_ms: dict[str, int] = {}  # symbol -> bar time of its last snapshot
        self.thresholds_loaded = 0
        self.instance = instance or socket.gethostname()
        # also aborts what a killed predecessor left open
        self.producer = transactional_producer(settings, f"{self.group}-{self.instance}")
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
        # a failed transaction is aborted and rewound: back to the committed offsets, with the
        # thresholds and sequences rebuilt as on an assignment
        self.loop = TransactionalLoop(
            STAGE,
            self.producer,
            self.consumer,
            self.topic,
            batch=settings.kafka.consume_batch,
            poll_s=0.5,
            record_type="FeatureVector",
            linger_s=BURST_LINGER_S,
            rewind=self._on_assign,
        )

    def run(self, max_idle_s: float | None = None) -> None:
        """Consume until stopped (SIGTERM/SIGINT) or idle for `max_idle_s`."""
        self.watcher.start()
        collect_rarely()
        freeze_long_lived()  # the loaded models (see tickwatch.stage.GC_THRESHOLDS)
        try:
            run_steps(self.step, lambda: self.loop.stopping, max_idle_s)
        finally:
            self.close()

    def stop(self) -> None:
        self.loop.stopping = True

    def step(self) -> int:
        """Swap in a reloaded model if any, then score one batch in one transaction; returns
        messages committed."""
        self._swap_models()
        return self.loop.step(self._process)

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
        freeze_long_lived()  # the new models out of the collector's walks, the old ones freed
        log.info("scoring with %s", new.version)

    def _process(self, msgs: list[Message], offsets: dict[int, int]) -> Outcome:
        """Score one batch into the open transaction: events, dead letters and the thresholds
        to snapshot (the loop adds the offsets and commits)."""
        symbols_before = len(self.partition_of)
        vectors, sources = self._accept(msgs, live=True)
        events = self._score(vectors, sources, emit=True)
        self._snapshot_thresholds(vectors, offsets)
        if len(self.partition_of) != symbols_before:
            freeze_long_lived(collect=False)  # new symbols' sequences and thresholds

        def committed() -> None:
            now = time.time()
            observe_hop(Hop.FEATURES_TO_SCORES, sources, now)  # every vector scored
            # ingest -> decision for every vector (an anomaly event of it is committed in the
            # same transaction), the vector -> event hop for the flagged ones
            observe_latencies(STAGE, Hop.FEATURES_TO_ANOMALIES, sources, events, now_s=now)
            EVENTS_OUT.labels(STAGE, "AnomalyEvent").inc(len(events))
            if vectors:
                LAST_EVENT_TS.labels(STAGE).set(max(v.bar_start_ms for v in vectors) / 1000)

        return Outcome(committed=committed)

    def _accept(self, msgs: list[Message], live: bool) -> tuple[list[FeatureVector], list[Message]]:
        """Decoded, complete, new vectors; the rest go to the dead-letter topic (when live)."""
        vectors: list[FeatureVector] = []
        sources: list[Message] = []
        latest: dict[str, int] = {}
        for m in msgs:
            reason, kind, v = None, "invalid", None
            try:
                v = decode(FeatureVector, m.value() or b"")
            except SchemaError as exc:
                reason = str(exc)
            if v is not None:
                missing = [k for k in REQUIRED_FEATURES if k not in v.features]
                prev = latest.get(v.symbol)
                if missing:
                    reason, kind = f"missing features {missing}", "missing_features"
                elif (prev is not None and v.bar_start_ms <= prev) or not self.buffer.is_new(
                    v.symbol, v.bar_start_ms
                ):
                    reason, kind = f"{v.symbol} bar {v.bar_start_ms} already scored", "duplicate"
            if reason is None and v is not None:
                latest[v.symbol] = v.bar_start_ms
                self.partition_of[v.symbol] = partition_offset(m)[0]
                vectors.append(v)
                sources.append(m)
            elif live:
                if kind == "duplicate":
                    DUPLICATES.labels(STAGE, kind).inc()
                key = raw_key.decode(errors="replace") if (raw_key := m.key()) else None
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
    ) -> list[Message]:
        """Score in one call per model; produce an event per new anomaly when `emit`.

        Returns each emitted event's source vector message (its latencies start there).
        """
        rows = self.scorer.score(vectors, self.buffer)
        events = []
        for row, m in zip(rows, sources, strict=True):
            if not row.flagged or not self.cooldown.admit(row.symbol, row.bar_start_ms):
                continue
            if not emit:
                continue
            event = self.scorer.to_event(row, int(time.time() * 1000))
            produce(
                self.producer,
                self.out_topic,
                encode(event),
                key=event.event_id,
                headers=ingest_headers(m),
            )
            flagged_by = "+".join(s.model for s in row.model_scores if s.flagged) or "rule"
            ANOMALIES.labels(row.symbol, flagged_by, event.severity).inc()
            events.append(m)
        if emit:
            for row in rows:
                for s in row.model_scores:
                    ANOMALY_SCORE.labels(s.model).observe(s.score)
            for model in ("iforest", "lstm_ae"):
                SCORED_BARS.labels(model).inc(
                    sum(1 for r in rows if any(s.model == model for s in r.model_scores))
                )
        return events

    def _snapshot_thresholds(self, vectors: list[FeatureVector], offsets: dict[int, int]) -> None:
        """Write the thresholds that rolled to a new session (or went an hour unsaved) to the
        changelog, in the batch's transaction, with the offset their replay starts after."""
        version = self.scorer.version
        for symbol in {v.symbol for v in vectors}:
            t = self.buffer.thresholds.get(symbol)
            if t is None:
                continue
            saved = self.snapshot_ms.get(symbol)
            if not t.rolled and saved is not None and t.last_ms - saved < SNAPSHOT_EVERY_MS:
                continue
            t.rolled = False
            self.snapshot_ms[symbol] = t.last_ms
            partition = self.partition_of[symbol]
            record = {
                "version": version,
                "partition": partition,
                "offset": offsets[partition],
                "state": t.to_dict(),
            }
            produce(
                self.producer,
                self.threshold_topic,
                json.dumps(record).encode(),
                key=symbol,
                partition=partition,
            )

    def _load_thresholds(self, partitions: list[int]) -> dict[int, int]:
        """Adopt the changelog's thresholds of these partitions (this model pair's only);
        returns per partition the earliest offset a snapshot's replay must start from."""
        detector = self.scorer.detector
        self.buffer.threshold("", detector)  # binds the buffer to this detector
        self.buffer.thresholds.pop("", None)
        starts: dict[int, int] = {}
        for key, value in read_latest(self.settings, self.threshold_topic, partitions).items():
            if value is None:
                continue
            record = json.loads(value)
            if record["version"] != self.scorer.version:
                continue
            symbol = key.decode()
            t = detector.new_threshold()
            t.load(record["state"])
            self.buffer.thresholds[symbol] = t
            self.snapshot_ms[symbol] = t.last_ms
            self.cooldown.resume(symbol, t)
            p, offset = int(record["partition"]), int(record["offset"])
            starts[p] = min(starts.get(p, offset), offset)
        self.thresholds_loaded = len(self.buffer.thresholds)
        return starts

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        """Load the assigned partitions' thresholds, then rebuild their sequences, cooldowns
        and today's counts from before the commit."""
        self._forget({p.partition for p in partitions})
        committed = consumer.committed(partitions, timeout=60)
        snapshots = self._load_thresholds([p.partition for p in partitions])
        replayed = self._replay([tp for tp in committed if tp.offset >= 0], snapshots)
        log.info(
            "assigned %s; loaded %d thresholds; rebuilt state from %d earlier vectors",
            sorted(p.partition for p in partitions),
            self.thresholds_loaded,
            replayed,
        )
        freeze_long_lived()  # the rebuilt sequences and thresholds

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        self._forget({p.partition for p in partitions})

    def _forget(self, partitions: set[int]) -> None:
        for sym in [s for s, p in self.partition_of.items() if p in partitions]:
            del self.partition_of[sym]
            self.buffer.forget(sym)
            self.snapshot_ms.pop(sym, None)
            self.cooldown.forget(sym)

    def _replay(self, committed: list[TopicPartition], snapshots: dict[int, int]) -> int:
        """Re-score, silently, `replay_messages` per partition before the committed offsets or
        before the partition's oldest threshold snapshot, whichever is earlier: the bars after
        a snapshot are counted into its threshold again with the windows they had the first
        time (a replayed bar the snapshot already counted is not counted again, nor admitted
        to the cooldown: see Cooldown.resume)."""
        reader = make_consumer(
            self.settings, f"{self.group}-rebuild", **{"isolation.level": "read_committed"}
        )
        ends, starts = {}, []
        for tp in committed:
            low, _high = reader.get_watermark_offsets(tp, timeout=30)
            since = min(tp.offset, snapshots.get(tp.partition, tp.offset)) - self.replay_messages
            start = max(low, since)
            if start < tp.offset:
                ends[tp.partition] = tp.offset
                starts.append(TopicPartition(self.topic, tp.partition, start))
        replayed = 0
        if starts:
            reader.assign(starts)
        while ends:
            msgs = consume_batch(reader, self.settings.kafka.consume_batch, 1.0)
            positions = [partition_offset(m) for m in msgs]
            keep = [m for m, (p, o) in zip(msgs, positions, strict=True) if o < ends.get(p, -1)]
            for p, o in positions:
                if p in ends and o >= ends[p] - 1:
                    del ends[p]
            vectors, sources = self._accept(keep, live=False)
            self._score(vectors, sources, emit=False)
            replayed += len(vectors)
        reader.close()
        return replayed


def threshold_topic_spec(group: str, settings: Settings) -> TopicSpec:
    """The thresholds' changelog: compacted, keyed by symbol, co-partitioned with the features
    topic (the name is the consumer group, so it carries the deployment's prefix)."""
    return TopicSpec(
        f"{group}-thresholds",
        "symbol",
        "JSON: model version, replay offset, OnlineThreshold state",
        partitions=partitions_for(FEATURES, settings),
        cleanup_policy="compact",
        doc="score worker: each symbol's online alert threshold",
    )


def ensure_threshold_topic(group: str, settings: Settings) -> str:
    spec = threshold_topic_spec(group, settings)
    ensure_topics(settings.model_copy(update={"topic_prefix": ""}), [spec])
    return spec.name


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
    stop_on_signals(worker.stop)
    log.info("scoring %s -> %s with %s", worker.topic, worker.out_topic, worker.scorer.version)
    worker.run(max_idle_s)
