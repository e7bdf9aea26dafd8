"""Faust agent: trades -> one-minute bars on the bars topic (when AM bars are not subscribed).

Open windows live in the changelog-backed `trade-windows` table; closed bars are produced and
acknowledged before the table is written, as in the features agent, so a restart neither loses
nor double-counts trades (re-read trades below the stored offset are skipped).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import faust

from stream_processors.bar_builder import LATE, REPLAYED, MinuteBarBuilder, SymbolWindows
from stream_processors.outputs import produce_records
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import INGEST_HEADER, flush_or_raise, make_producer, produce
from tickwatch.metrics import DUPLICATES, EVENTS_IN, EVENTS_OUT
from tickwatch.schemas import SchemaError, Trade, decode, encode
from tickwatch.settings import Settings
from tickwatch.topics import BARS, TRADES, topic_name

STAGE = "bars-from-trades"


class BarBuilderAgent:
    """The trades -> bars step with its table and producer."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.builder = MinuteBarBuilder(settings.features.allowed_lateness_s)
        self.table = app.Table("trade-windows", key_type=str)
        self.topic = app.topic(
            topic_name(TRADES, settings),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.bars_topic = topic_name(BARS, settings)
        self.producer = make_producer(settings)
        self.dead = DeadLetterSink(self.producer, settings, STAGE)
        self.ingest: dict[str, bytes] = {}
        self.loaded = False

    async def process(self, events: list[faust.EventT]) -> None:
        """Window a batch of trades, publish the bars that closed, then persist the windows."""
        if not self.loaded:
            self.builder.symbols = {
                k: SymbolWindows.from_dict(v) for k, v in self.table.data.items()
            }
            self.loaded = True
        for event in events:
            msg = event.message
            try:
                trade = decode(Trade, msg.value or b"")
            except SchemaError as exc:
                self.dead.send(
                    msg.value or b"",
                    str(exc),
                    kind="invalid",
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                )
                continue
            verdict = self.builder.add(trade, msg.partition, msg.offset)
            if verdict == LATE:
                self.dead.send(
                    msg.value or b"",
                    f"trade at {trade.timestamp_ms} is later than the "
                    f"allowed lateness for its minute",
                    kind="late_trade",
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    key=trade.symbol,
                )
            elif verdict == REPLAYED:
                DUPLICATES.labels(STAGE, REPLAYED).inc()
            else:
                header = dict(msg.headers or ()).get(INGEST_HEADER)
                if header is not None:
                    self.ingest.setdefault(trade.symbol, header)
        EVENTS_IN.labels(STAGE, "Trade").inc(len(events))
        bars = self.builder.close_ready()
        for bar in bars:
            header = self.ingest.pop(bar.symbol, None)
            produce(
                self.producer,
                self.bars_topic,
                encode(bar),
                key=bar.symbol,
                timestamp_ms=bar.start_ms,
                headers=[(INGEST_HEADER, header)] if header is not None else None,
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, flush_or_raise, self.producer)
        EVENTS_OUT.labels(STAGE, "MinuteBar").inc(len(bars))
        topic = self.table.changelog_topic.get_topic_name()
        records = []
        for symbol in self.builder.dirty:
            sw = self.builder.symbols[symbol]
            self.table.data[symbol] = value = sw.to_dict()
            records.append(
                (topic, sw.partition, json.dumps(symbol).encode(), json.dumps(value).encode())
            )
        self.builder.dirty.clear()
        await produce_records(self.producer, records)


def register_bar_builder(app: faust.App, settings: Settings) -> BarBuilderAgent:
    """Define the trades -> bars agent on `app`."""
    stage = BarBuilderAgent(app, settings)
    batch = max(1, settings.kafka.consume_batch)

    @app.agent(stage.topic, name="trades-to-bars")
    async def trades_to_bars(stream: faust.StreamT) -> None:
        # take_events is on faust's Stream (what agents get), not on the StreamT protocol
        async for events in stream.take_events(batch, within=0.05):  # type: ignore[attr-defined]
            await stage.process(list(events))

    # mode's SignalHandlerT alias (VarArg/NamedArg) matches no handler, not even its own shape
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        stage.loaded = False

    return stage
