"""The batch features engine: the same step as the Faust agent, on confluent-kafka batches.

Faust hands events to an agent one at a time (an agent that only counts them tops out near
7,000 events/s on a 2-core machine), so a whole-market minute needs another path. This worker
consumes up to `features.step_bars` bars per step and runs exactly the Faust agent's logic
(BarIntake, MarketAligner, FeatureOutputs); each step is one Kafka transaction holding the
feature vectors, market returns, dead letters, the changed state (stream_processors.state_log)
and the consumer offsets, run by tickwatch.stage's TransactionalLoop (the score worker's too). A
crash aborts the open transaction, so a restarted worker resumes from committed state and
offsets and emits every vector exactly once to read_committed consumers; a step that cannot
commit is aborted and rewound to the same committed state in the running worker. The Feast write
is idempotent (same values, and only newer timestamps replace a row).

Select it with `tickwatch features --engine batch` (or TICKWATCH_FEATURES__ENGINE=batch). Scale
out like the Faust engine: one worker per partition subset, same consumer group.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from confluent_kafka import Message, TopicPartition

from stream_processors.alignment import MarketAligner, MarketMinute, Released
from stream_processors.feast_push import OnlineWriter
from stream_processors.intake import BarIntake
from stream_processors.outputs import FeatureOutputs
from stream_processors.state_log import dirty_records, ensure_state_topic, read_slots
from tickwatch.kafka import appended_ms, consume_batch, make_consumer, partition_offset, produce
from tickwatch.metrics import LAST_EVENT_TS
from tickwatch.schemas import MarketReturn, SchemaError, decode
from tickwatch.settings import Settings
from tickwatch.stage import (
    BURST_LINGER_S,
    Outcome,
    TransactionalLoop,
    collect_rarely,
    freeze_long_lived,
    run_steps,
    stop_on_signals,
    transactional_producer,
)
from tickwatch.topics import BARS, MARKET_RETURNS, topic_name

log = logging.getLogger(__name__)
STAGE = "features"
STALL_CHECK_S = 1.0


def batch_group(settings: Settings) -> str:
    """Consumer group, transactional-id and state-topic prefix of the batch engine."""
    return f"{settings.topic_prefix}tickwatch-features-batch"


class BatchFeaturesWorker:
    """Bars -> features in transactional steps; state recovered from its changelog on assign."""

    def __init__(self, settings: Settings, writer: OnlineWriter, instance: str | None = None):
        self.settings = settings
        fs = settings.features
        self.group = batch_group(settings)
        self.instance = instance or socket.gethostname()
        self.state_topic = ensure_state_topic(self.group, settings)
        self.bars_topic = topic_name(BARS, settings)
        self.aligner = MarketAligner(fs.market_symbol, fs.beta_window, fs.allowed_lateness_s)
        # fences a killed predecessor, aborts its step
        self.producer = transactional_producer(settings, f"{self.group}-{self.instance}")
        self.outputs = FeatureOutputs(settings, writer, STAGE, producer=self.producer)
        self.intake = BarIntake(self.aligner, self.outputs.dead, STAGE)
        self.consumer = make_consumer(
            settings,
            self.group,
            **{
                "isolation.level": "read_committed",
                # dynamic membership: a static member that outlives its session (a broker
                # restart) is fenced for good; a killed worker's partitions move within 10 s
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 3_000,
            },
        )
        self.consumer.subscribe([self.bars_topic], on_assign=self._on_assign)
        self.market = make_consumer(
            settings,
            f"{self.group}-market-{self.instance}",
            **{"isolation.level": "read_committed"},
        )
        self.market.assign([TopicPartition(topic_name(MARKET_RETURNS, settings), 0, 0)])
        self.step_bars = max(1, fs.step_bars)
        # a step that cannot commit is aborted and rewound: back to the committed offsets and
        # the state committed with them
        self.loop = TransactionalLoop(
            STAGE,
            self.producer,
            self.consumer,
            self.bars_topic,
            batch=self.step_bars,
            poll_s=0.2,
            record_type="MinuteBar",
            linger_s=BURST_LINGER_S,
            rewind=self._on_assign,
        )
        self._stall_at = 0.0

    def run(self, max_idle_s: float | None = None) -> None:
        """Steps until SIGTERM/SIGINT (or idle for `max_idle_s`); then close cleanly."""
        collect_rarely()
        try:
            run_steps(self.step, lambda: self.loop.stopping, max_idle_s)
        finally:
            self.close()

    def step(self) -> int:
        """Consume a batch and commit its outputs, state and offsets atomically; returns bars."""
        msgs = self.loop.consume()
        market = consume_batch(self.market, 5000, 0)
        stall_due = time.monotonic() - self._stall_at >= STALL_CHECK_S
        if not msgs and not market and not (stall_due and self.aligner.waiting):
            self.loop.lag.update()
            return 0
        done = self.loop.transact(msgs, lambda m, _: self._process(m, market, stall_due))
        self.loop.lag.update()
        return len(msgs) if done else 0

    def _process(self, msgs: list[Message], market: list[Message], stall_due: bool) -> Outcome:
        """Run the step's bars and market returns into the open transaction: dead letters,
        feature vectors, market returns and the changed state; the Feast write starts here and
        is waited for before the commit."""
        touched: set[str] = set()
        symbols_before = len(self.aligner.slots)
        for m in msgs:
            self.intake.offer(
                m.value(),
                m.topic(),
                *partition_offset(m),
                m.headers(),
                appended_ms(m),
                touched,
            )
        if len(self.aligner.slots) != symbols_before:
            freeze_long_lived(collect=False)  # new symbols' state: long-lived
        self.aligner.add_market_returns(self._market_returns(market))
        if stall_due:
            self._stall_at = time.monotonic()
        out = Released()
        self.aligner.release(touched | self.aligner.waiting, out)
        rows = self.outputs.finite_rows(out.rows, self.intake.stamps)
        pending = self.outputs.start_online(rows) if rows else None  # Redis works meanwhile
        starts = self.outputs.produce_rows(out.market, rows, self.intake.stamps)
        for partition, key, value in dirty_records(self.aligner.slots, self.aligner.dirty):
            produce(self.producer, self.state_topic, value, key, partition=partition)

        def committed() -> None:
            self.outputs.count(rows, starts)
            if msgs:
                LAST_EVENT_TS.labels(STAGE).set(self.aligner.watermark / 1000)

        return Outcome(
            before_commit=lambda: self.outputs.finish_online(pending, rows) if rows else None,
            committed=committed,
            aborted=lambda: self.outputs.finish_online(pending, []),
        )

    def close(self) -> None:
        self.consumer.close()
        self.market.close()

    def stop(self, *_: Any) -> None:
        self.loop.stopping = True

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Rebuild the slots of exactly the assigned partitions from the committed state."""
        mine = sorted(tp.partition for tp in partitions)
        self.aligner.load(read_slots(self.settings, self.state_topic, mine))
        freeze_long_lived()  # the recovered state (see tickwatch.stage.GC_THRESHOLDS)
        self.aligner.dirty.clear()
        self.intake.stamps.clear()
        self.outputs.writer.forget()
        log.info("features: %d symbols recovered on partitions %s", len(self.aligner.slots), mine)

    def _market_returns(self, msgs: list[Any]) -> list[MarketMinute]:
        returns = []
        for m in msgs:
            try:
                r = decode(MarketReturn, m.value())
            except SchemaError as exc:
                self.outputs.dead.send(
                    m.value() or b"",
                    str(exc),
                    kind="invalid",
                    topic=m.topic(),
                    partition=m.partition(),
                    offset=m.offset(),
                )
                continue
            returns.append((r.start_ms, r.log_return, r.volume_z, r.volume_excess))
        return returns


def run(settings: Settings, writer: OnlineWriter, instance: str | None = None) -> None:
    """Run one batch worker until SIGTERM/SIGINT."""
    worker = BatchFeaturesWorker(settings, writer, instance)
    stop_on_signals(worker.stop)
    log.info("%s batch worker %s (%s) starting", STAGE, worker.group, worker.instance)
    worker.run()
