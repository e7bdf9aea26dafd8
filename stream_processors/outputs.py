"""Where computed features go: the features topic (FeatureVector), the market-returns topic, Feast.

Every batch is produced, written to the online store, then flushed: `emit` returns only once the
broker acknowledged everything, so state persisted after it never runs ahead of the outputs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable

import msgspec
from confluent_kafka import Producer

from stream_processors.alignment import MarketMinute, Released
from stream_processors.feast_push import FeatureRow, OnlineWriter, PendingWrite
from stream_processors.intake import BarStamps
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import INGEST_HEADER, flush_or_raise, make_producer, produce
from tickwatch.metrics import ERRORS, EVENT_TO_EMIT, EVENTS_OUT, HOP_LATENCY, Hop, observe_since
from tickwatch.retry import REDIS_DOWN, async_retrying, retrying
from tickwatch.schemas import MarketReturn, encode
from tickwatch.settings import Settings
from tickwatch.topics import FEATURES, MARKET_RETURNS, topic_name

log = logging.getLogger(__name__)
Stamps = dict[tuple[str, int], BarStamps]  # (symbol, bar start) -> the bar's stamps
Starts = tuple[list[int], list[int]]  # emitted rows' ingest ms and bar append ms
NO_STAMPS = BarStamps(None, None)


class FeatureOutputs:
    """One confluent-kafka producer for features, market returns and dead letters, plus Feast.

    The Faust engine awaits `emit`; the batch engine calls `finite_rows`, `start_online`,
    `produce_rows`, `finish_online` and `count` around its own Kafka transaction.
    """

    def __init__(
        self,
        settings: Settings,
        writer: OnlineWriter,
        stage: str,
        producer: Producer | None = None,
    ) -> None:
        self.stage = stage
        self.market_symbol = settings.features.market_symbol
        self.producer = producer or make_producer(settings)
        self.dead = DeadLetterSink(self.producer, settings, stage)
        self.writer = writer
        self.features_topic = topic_name(FEATURES, settings)
        self.market_topic = topic_name(MARKET_RETURNS, settings)

    async def emit(self, out: Released, stamps: Stamps) -> None:
        """Publish a step's rows and market returns, write Feast, wait for acknowledgements."""
        rows, starts = self.produce(out, stamps)
        if not rows and not out.market:
            return
        # the broker's acknowledgements and the Feast write are awaited together, not one
        # after the other: two round trips a step, paid at once
        acked = asyncio.get_running_loop().run_in_executor(None, flush_or_raise, self.producer)
        try:
            if rows:
                await self._write_online(rows)
        finally:
            await acked
        self.count(rows, starts)

    def produce(self, out: Released, stamps: Stamps) -> tuple[list[FeatureRow], Starts]:
        """Produce a step's market returns and finite rows (not flushed): (rows, their starts)."""
        rows = self.finite_rows(out.rows, stamps)
        return rows, self.produce_rows(out.market, rows, stamps)

    def finite_rows(self, rows: list[FeatureRow], stamps: Stamps) -> list[FeatureRow]:
        """The rows whose features are all finite; the others go to the dead-letter topic."""
        if all_finite(v for row in rows for v in row.features.values()):
            return rows
        good = []
        for row in rows:
            if all_finite(row.features.values()):
                good.append(row)
                continue
            stamps.pop((row.symbol, row.bar_start_ms), None)
            self.dead.send(repr(row), "non-finite feature value", kind="non_finite", key=row.symbol)
        return good

    def produce_rows(
        self,
        market: list[MarketMinute],
        rows: list[FeatureRow],
        stamps: Stamps,
    ) -> Starts:
        """Produce market minutes and (finite) feature rows, not flushed; the rows' starts."""
        for start, r, volume_z, volume_excess in market:
            value = encode(
                MarketReturn(
                    symbol=self.market_symbol,
                    start_ms=start,
                    log_return=r,
                    volume_z=volume_z,
                    volume_excess=volume_excess,
                )
            )
            produce(
                self.producer, self.market_topic, value, key=self.market_symbol, timestamp_ms=start
            )
        ingests, appended = [], []
        now_ms = int(time.time() * 1000)
        for row in rows:
            ingest, appended_ms = stamps.pop((row.symbol, row.bar_start_ms), NO_STAMPS)
            produce(
                self.producer,
                self.features_topic,
                feature_vector_json(row, now_ms),
                key=row.symbol,
                timestamp_ms=row.bar_start_ms,
                headers=[(INGEST_HEADER, ingest)] if ingest is not None else None,
            )
            if ingest is not None:
                ingests.append(int(ingest))
            if appended_ms is not None:
                appended.append(appended_ms)
        return ingests, appended

    def count(self, rows: list[FeatureRow], starts: Starts) -> None:
        """Output counter, ingest-to-emit and bars-to-features latencies, once the rows are
        acknowledged."""
        EVENTS_OUT.labels(self.stage, "FeatureVector").inc(len(rows))
        done_s = time.time()
        ingests, appended = starts
        observe_since(EVENT_TO_EMIT.labels(self.stage), ingests, done_s)
        observe_since(HOP_LATENCY.labels(Hop.BARS_TO_FEATURES), appended, done_s)

    def start_online(self, rows: list[FeatureRow]) -> PendingWrite | None:
        """Begin the Feast write of these rows (see OnlineWriter.start); None if Redis failed
        already (finish_online then retries)."""
        try:
            return self.writer.start(rows)
        except REDIS_DOWN as exc:
            self._redis_failed(exc)
            return None

    def finish_online(self, pending: PendingWrite | None, rows: list[FeatureRow]) -> None:
        """Wait for a write begun by start_online; if it failed, write the rows again (retrying
        while Redis is unavailable)."""
        if pending is not None:
            try:
                pending.wait()
                return
            except REDIS_DOWN as exc:
                self._redis_failed(exc)
        self.write_online(rows)

    def write_online(self, rows: list[FeatureRow]) -> None:
        """Write Feast rows, retrying while Redis is unavailable (blocking; see _write_online)."""
        retrying(REDIS_DOWN, self._redis_failed)(self.writer.write, rows)

    async def _write_online(self, rows: list[FeatureRow]) -> None:
        """Write Feast rows off the event loop, retrying while Redis is unavailable.

        The batch is not acknowledged until this returns, so an outage holds the stream (the
        consumer keeps its heartbeats) instead of crashing the agent and skipping its bars.
        """
        loop = asyncio.get_running_loop()

        async def write() -> None:
            await loop.run_in_executor(None, self.writer.write, rows)

        await async_retrying(REDIS_DOWN, self._redis_failed)(write)

    def _redis_failed(self, exc: BaseException, delay: float = 0.0) -> None:
        ERRORS.labels(self.stage, "redis").inc()
        log.warning("Feast online write failed (%s); retrying in %.1fs", exc, delay)

    async def write_changelog(self, records: list[tuple[str, int, bytes, bytes]]) -> None:
        """Produce (topic, partition, key, value) records and wait until they are acknowledged."""
        await produce_records(self.producer, records)

    def close(self) -> None:
        flush_or_raise(self.producer)


class _FeatureVectorOut(msgspec.Struct, gc=False):
    """Field for field the FeatureVector wire schema, encoded by msgspec (20 us -> 2 us a row)."""

    v: int
    symbol: str
    bar_start_ms: int
    close: float
    volume: float
    features: dict[str, float]
    warm: bool
    computed_at_ms: int


_encode_vector = msgspec.json.Encoder().encode


def feature_vector_json(row: FeatureRow, computed_at_ms: int) -> bytes:
    """The FeatureVector wire record for a row (values already checked finite); a unit test
    holds it equal to `encode(FeatureVector(...))`."""
    return _encode_vector(
        _FeatureVectorOut(
            1,
            row.symbol,
            row.bar_start_ms,
            row.close,
            row.volume,
            row.features,
            row.warm,
            computed_at_ms,
        )
    )


def all_finite(values: Iterable[float]) -> bool:
    """True when no value is NaN or infinite: a NaN or infinity makes the sum non-finite, and
    only then (or on overflow) is each value checked."""
    values = list(values)
    return math.isfinite(sum(values)) or all(map(math.isfinite, values))


async def produce_records(producer: Producer, records: list[tuple[str, int, bytes, bytes]]) -> None:
    """Produce (topic, partition, key, value) records and wait until all are acknowledged."""
    for topic, partition, key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, partition)
                break
            except BufferError:
                producer.poll(0.05)
    if records:
        await asyncio.get_running_loop().run_in_executor(None, flush_or_raise, producer)
