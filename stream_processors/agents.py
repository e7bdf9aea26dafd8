"""Faust agents of the features service: minute bars -> rolling features -> Feast + features topic.

State lives in two changelog-backed tables: `symbol-state` (rolling windows, bars waiting for the
market, last offset) and `minute-profile` (per symbol and minute of day, for volume_z_tod), so a
restarted worker recovers from Kafka. Their values are the batch engine's binary records
(stream_processors.state_codec; the JSON snapshots of earlier versions are still read). Each
batch of events is handled in one step: decode, queue, release ready bars
(stream_processors.alignment), write Feast and the features topic, wait for the broker's
acknowledgement, then write the changelog; Faust commits offsets only after that. A crash at any
point re-reads bars whose state was not persisted and recomputes identical features."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.record.default_records import DefaultRecordBase
from faust.types import TableT

from stream_processors.alignment import MarketAligner, MarketMinute, Released
from stream_processors.feast_push import OnlineWriter
from stream_processors.intake import BarIntake
from stream_processors.outputs import FeatureOutputs
from stream_processors.state_codec import dirty_state, read_profile, read_slot
from stream_processors.take import take_bursts
from tickwatch.metrics import CONSUMER_LAG, EVENTS_IN, LAST_EVENT_TS
from tickwatch.schemas import MarketReturn, SchemaError, decode
from tickwatch.settings import Settings
from tickwatch.topics import BARS, MARKET_RETURNS, topic_name

log = logging.getLogger(__name__)
STAGE = "features"
# Events handled per step, in consume batches: two broker round trips (outputs, then state)
# and two Redis round trips are paid per step, so bigger steps amortise them.
TAKE_BATCHES = 5
# A step's events (stream_processors.take.take_bursts): while bars flow, those of TAKE_WITHIN_S
# (Faust's take_events timer; shorter steps each pay their flushes and fell behind at replay
# speed 15360); a burst after a quiet spell (a live minute) ends when no bar came for TAKE_GAP_S
# instead of waiting for the timer (10 ms on average, 20 ms at worst).
TAKE_WITHIN_S = 0.02
TAKE_GAP_S = 0.003
# table names; Faust's changelog topics are "<app id>-<table>-changelog"
STATE_TABLE, PROFILE_TABLE = "symbol-state", "minute-profile"


class FeaturesAgent:
    """The bars -> features step with its tables, outputs and market-return feed."""

    def __init__(self, app: faust.App, settings: Settings, writer: OnlineWriter) -> None:
        self.app = app
        self.settings = settings
        fs = settings.features
        self.aligner = MarketAligner(fs.market_symbol, fs.beta_window, fs.allowed_lateness_s)
        self.outputs = FeatureOutputs(settings, writer, STAGE)
        # JSON keys; values are binary state records (state_codec), exact and about ten times
        # cheaper to write than the JSON snapshots (which took ~40% of a whole-market step);
        # value_type bytes makes Faust's value serializer "raw"
        self.states = app.Table(STATE_TABLE, key_type=str, value_type=bytes)
        self.profiles = app.Table(PROFILE_TABLE, key_type=str, value_type=bytes)
        self.bars_topic = app.topic(
            topic_name(BARS, settings),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.intake = BarIntake(self.aligner, self.outputs.dead, STAGE)
        self.lock = asyncio.Lock()
        self.loaded = False

    def on_rebalance(self) -> None:
        """Forget cached slots (reloaded from the tables after recovery) and Feast timestamps."""
        self.loaded = False
        self.outputs.writer.forget()

    async def process(self, events: list[faust.EventT]) -> None:
        """One batch of bar events from the agent's stream."""
        async with self.lock:
            self._load()
            touched: set[str] = set()
            for event in events:
                self._offer(event.message, touched)
            EVENTS_IN.labels(STAGE, "MinuteBar").inc(len(events))
            self._update_lag(events)
            await self._release(touched | set(self.aligner.waiting_symbols()))

    async def on_market_returns(self, returns: list[MarketMinute]) -> None:
        """Market returns from the market-returns topic: release the bars waiting for them."""
        async with self.lock:
            self.aligner.add_market_returns(returns)
            if self.loaded:
                await self._release(self.aligner.waiting_symbols())

    async def release_stalled(self) -> None:
        """Timer: release bars whose market bar is overdue (the market feed stalled)."""
        async with self.lock:
            if self.loaded and self.aligner.waiting_symbols():
                await self._release(self.aligner.waiting_symbols())

    def _offer(self, msg: Any, touched: set[str]) -> None:
        stamped = msg.timestamp_type == DefaultRecordBase.LOG_APPEND_TIME  # broker's arrival time
        appended = round(msg.timestamp * 1000) if stamped else None
        self.intake.offer(
            msg.value, msg.topic, msg.partition, msg.offset, msg.headers, appended, touched
        )

    async def _release(self, symbols: Any) -> None:
        out = Released()
        self.aligner.release(symbols, out)
        await self.outputs.emit(out, self.intake.stamps)
        await self._persist()

    def _load(self) -> None:
        """After (re)assignment: rebuild the slots of our partitions from the recovered tables."""
        if self.loaded:
            return
        mine = {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.bars_topic.get_topic_name()
        }
        slots = {}
        for symbol, value in self.states.data.items():
            slot = read_slot(symbol, value)
            if slot.partition in mine:
                slots[symbol] = slot
        for key, value in self.profiles.data.items():
            symbol, minute = key.rsplit("|", 1)
            if symbol in slots:
                slots[symbol].state.tod[int(minute)] = read_profile(value)
        self.aligner.load(slots)
        self.loaded = True
        log.info(
            "features: %d symbols recovered on partitions %s", len(self.aligner.slots), sorted(mine)
        )

    async def _persist(self) -> None:
        """Write changed slots to the tables' changelogs, after the outputs were acknowledged.

        The records go through the stage's own producer and are flushed here, before Faust acks
        (and later commits) the batch's offsets; Faust's per-message producer buffer managed only
        a few hundred changelog records a second.
        """
        records = [
            _changelog(self.states, partition, symbol, value)
            if minute is None
            else _changelog(self.profiles, partition, f"{symbol}|{minute}", value)
            for partition, symbol, minute, value in dirty_state(
                self.aligner.slots, self.aligner.dirty
            )
        ]
        await self.outputs.write_changelog(records)

    def _update_lag(self, events: list[faust.EventT]) -> None:
        last: dict[Any, int] = {}
        for event in events:
            last[event.message.tp] = event.message.offset
        for tp, offset in last.items():
            high = self.app.consumer.highwater(tp)
            if high is not None:
                CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(high - offset - 1)
        if events:
            LAST_EVENT_TS.labels(STAGE).set(self.aligner.watermark / 1000)


def _changelog(
    table: TableT, partition: int, key: str, value: bytes
) -> tuple[str, int, bytes, bytes]:
    """Set a table key in memory; return its changelog record (a JSON key, as Faust's codec
    reads it, and the raw value)."""
    table.data[key] = value
    return table.changelog_topic.get_topic_name(), partition, json.dumps(key).encode(), value


def register(app: faust.App, settings: Settings, writer: OnlineWriter) -> FeaturesAgent:
    """Define the bars agent, the market-return reader and the stall timer on `app`."""
    stage = FeaturesAgent(app, settings, writer)
    batch = max(1, settings.kafka.consume_batch) * TAKE_BATCHES

    @app.agent(stage.bars_topic, name="bars-to-features")
    async def bars_to_features(stream: faust.StreamT) -> None:
        async for events in take_bursts(stream, batch, TAKE_WITHIN_S, TAKE_GAP_S):
            await stage.process(events)

    # mode's SignalHandlerT alias (VarArg/NamedArg) matches no handler, not even its own shape
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        stage.on_rebalance()

    @app.task
    async def read_market_returns() -> None:
        await _read_market_returns(stage, settings)

    @app.timer(interval=1.0)
    async def release_stalled() -> None:
        await stage.release_stalled()

    return stage


async def _read_market_returns(stage: FeaturesAgent, settings: Settings) -> None:
    """Follow the whole market-returns topic (not in the consumer group: every worker reads all)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic_name(MARKET_RETURNS, settings), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        while True:
            got = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
            returns = []
            for record in got.get(tp, []):
                try:
                    m = decode(MarketReturn, record.value)
                except SchemaError as exc:
                    stage.outputs.dead.send(
                        record.value or b"",
                        str(exc),
                        kind="invalid",
                        topic=tp.topic,
                        partition=0,
                        offset=record.offset,
                    )
                    continue
                returns.append((m.start_ms, m.log_return, m.volume_z, m.volume_excess))
            if returns:
                await stage.on_market_returns(returns)
    finally:
        await consumer.stop()
