"""Publish parsed Polygon events to Kafka: batched, keyed by symbol, stamped with event time.

Minute bars are deduplicated per symbol (a bar is published only if it starts after the last one
published), so a reconnect that replays or backfills bars never writes one twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from functools import partial
from operator import attrgetter

from confluent_kafka import KafkaError, KafkaException, Message

from producers.parsing import Event, FrameError, ParsedFrame, parse_frame
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import (
    INGEST_HEADER,
    PURGED,
    RECORD_OVERHEAD_BYTES,
    DeliveryFailed,
    Headers,
    appended_ms,
    flush_or_raise,
    make_producer,
    produce,
)
from tickwatch.metrics import (
    BYTES_IN,
    DELIVERY_LATENCY,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    HOP_LATENCY,
    Hop,
)
from tickwatch.schemas import MinuteBar, encode
from tickwatch.settings import Settings
from tickwatch.topics import BARS, QUOTES, TRADES, topic_name

log = logging.getLogger(__name__)
LATENCY_SAMPLE = 16  # observe the delivery latency of one acknowledged message in this many
_symbol_of = attrgetter("symbol")


class Publisher:
    """Sends one stage's events through idempotent producers; refused input is dead-lettered.

    Trades, the bulk, go through their own producer that reports failed deliveries only (a
    Python callback per acknowledged trade costs as much as the produce call): acknowledged
    trades are those queued minus failed minus still in flight. Bars, quotes and dead letters
    report every delivery, which also feeds the delivery-latency histogram. The first failed
    delivery (after librdkafka's retries) raises DeliveryFailed from the poll or flush that
    reports it: the service stops rather than lose events with a log line.
    """

    def __init__(self, settings: Settings, stage: str = "producer") -> None:
        self.stage = stage
        self.producer = make_producer(settings, on_delivery=self._on_delivery)
        self.trade_producer = make_producer(
            settings, on_delivery=self._on_delivery, **{"delivery.report.only.error": True}
        )
        self.dead_letters = DeadLetterSink(self.producer, settings, stage)
        self.topics = {
            "T": topic_name(TRADES, settings),
            "Q": topic_name(QUOTES, settings),
            "AM": topic_name(BARS, settings),
        }
        self._kind_of = {topic: kind for kind, topic in self.topics.items()}
        self.last_bar_start: dict[str, int] = {}
        # None: every symbol is wanted (`*`); else events of other symbols are refused
        self.symbols = None if "*" in settings.symbols else frozenset(settings.symbols)
        self._acked_by_topic: Counter[str] = Counter()
        self._reported: Counter[str] = Counter()
        self._latency = DELIVERY_LATENCY.labels(stage)
        self._bytes_in = BYTES_IN.labels(stage)
        self._feed_hop = HOP_LATENCY.labels(Hop.FEED_TO_BARS)
        self._deliveries = 0
        self._trades_queued = 0
        self._trades_failed = 0
        self.delivery_errors = 0
        self.failure: DeliveryFailed | None = None
        # a bigger event could never be sent: it is dead-lettered (its head) instead
        self.max_event_bytes = settings.kafka.max_message_bytes - RECORD_OVERHEAD_BYTES

    @property
    def acked(self) -> Counter[str]:
        """Messages the broker acknowledged, by kind (T, Q, AM)."""
        self._count_acked_trades()
        return Counter(
            {k: self._acked_by_topic[t] for k, t in self.topics.items() if self._acked_by_topic[t]}
        )

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if err.code() in PURGED:  # purged on purpose (closing): neither acked nor failed
                self._trades_failed += msg.topic() == self.topics["T"]
                return
            self.delivery_errors += 1
            self._trades_failed += msg.topic() == self.topics["T"]
            ERRORS.labels(self.stage, "delivery").inc()
            log.error("delivery to %s failed (key %s): %s", msg.topic(), msg.key(), err)
            if self.failure is None:
                self.failure = DeliveryFailed(err, msg.topic())
                raise self.failure
            return
        self._acked_by_topic[msg.topic() or ""] += 1
        self._deliveries += 1
        if not self._deliveries % LATENCY_SAMPLE:
            self._latency.observe(msg.latency() or 0.0)

    def _on_bar_delivery(self, received_ms: int, err: KafkaError | None, msg: Message) -> None:
        """A bar's report: counted as any, then its hop from the feed's receipt to its append
        (the broker's LogAppendTime; the report's arrival on a topic without it)."""
        self._on_delivery(err, msg)
        if err is None:
            done_ms = appended_ms(msg) or time.time() * 1000
            self._feed_hop.observe(max(0.0, done_ms - received_ms) / 1000)

    def _count_acked_trades(self) -> None:
        in_flight = len(self.trade_producer)
        self._acked_by_topic[self.topics["T"]] = (
            self._trades_queued - self._trades_failed - in_flight
        )

    def poll(self) -> None:
        """Serve delivery reports and update the acknowledged-events counters."""
        self.producer.poll(0)
        self.trade_producer.poll(0)
        self._report_acked()

    def _report_acked(self) -> None:
        """Move acknowledgement counts to the Prometheus counter (batched, not per message)."""
        self._count_acked_trades()
        for topic, count in self._acked_by_topic.items():
            kind = self._kind_of.get(topic)
            if kind and count > self._reported[topic]:
                EVENTS_OUT.labels(self.stage, kind).inc(count - self._reported[topic])
                self._reported[topic] = count

    def publish_frame(
        self, frame: bytes | str, received_ms: int | None = None, source: str = "polygon"
    ) -> ParsedFrame:
        """Parse one WebSocket frame and publish its events; refused parts go to dead letters."""
        received_ms = received_ms or int(time.time() * 1000)
        self._bytes_in.inc(len(frame))
        try:
            parsed = parse_frame(frame, source)
        except FrameError as exc:
            self.dead_letters.send(frame, str(exc), kind="bad_frame")
            return ParsedFrame()
        for refused in parsed.refused:
            EVENTS_IN.labels(self.stage, "refused").inc()
            self.dead_letters.send(refused.raw, refused.reason, kind=refused.kind)
        for kind, count in parsed.skipped.items():
            EVENTS_IN.labels(self.stage, kind).inc(count)
        events = parsed.events
        if 2 * len(frame) > self.max_event_bytes:  # an event can outgrow its frame element a bit
            events = self._sendable(events)
        self.publish_events(self._configured(events), received_ms)
        return parsed

    def _sendable(self, events: list[Event]) -> list[Event]:
        """Events small enough for the broker; the others are dead-lettered as too_large."""
        kept = []
        for e in events:
            if len(e.payload) <= self.max_event_bytes:
                kept.append(e)
                continue
            EVENTS_IN.labels(self.stage, "refused").inc()
            self.dead_letters.send(
                e.payload,
                f"{e.kind} event of {len(e.payload)} bytes: the largest record sent is "
                f"{self.max_event_bytes} (kafka.max_message_bytes)",
                kind="too_large",
                key=e.symbol,
            )
        return kept

    def _configured(self, events: list[Event]) -> list[Event]:
        """Events of configured symbols; any other symbol is dead-lettered as unknown_symbol."""
        wanted = self.symbols
        if wanted is None or wanted.issuperset(map(_symbol_of, events)):
            return events
        kept = []
        for e in events:
            if e.symbol in wanted:
                kept.append(e)
            else:
                EVENTS_IN.labels(self.stage, "refused").inc()
                self.dead_letters.send(
                    e.payload,
                    f"symbol {e.symbol} is not configured",
                    kind="unknown_symbol",
                    key=e.symbol,
                )
        return kept

    def publish_events(self, events: list[Event], received_ms: int) -> int:
        """Produce events (bars deduplicated per symbol); returns how many were queued."""
        headers: Headers = [(INGEST_HEADER, str(received_ms).encode())]
        producer, trade_topic = self.trade_producer, self.topics["T"]
        send_trade = producer.produce
        n_trades, n_other = 0, Counter[str]()
        for kind, symbol, ts, payload in events:
            if kind == "T":
                # the hot path: positional arguments (topic, value, key, partition, on_delivery,
                # callback, timestamp, headers), as keywords cost a third of the call; on a
                # full queue, produce() serves callbacks and retries
                try:
                    send_trade(trade_topic, payload, symbol, -1, None, None, ts, headers)
                except BufferError:
                    produce(producer, trade_topic, payload, symbol, ts, headers=headers)
                n_trades += 1
                continue
            n_other[kind] += 1
            reported = None
            if kind == "AM":
                if not self._is_new_bar(symbol, ts, payload):
                    continue
                reported = partial(self._on_bar_delivery, received_ms)
            topic = self.topics[kind]
            produce(self.producer, topic, payload, symbol, ts, reported, headers=headers)
            n_other["queued"] += 1
        self._trades_queued += n_trades
        if n_trades:
            EVENTS_IN.labels(self.stage, "T").inc(n_trades)
        for kind in ("Q", "AM"):
            if n_other[kind]:
                EVENTS_IN.labels(self.stage, kind).inc(n_other[kind])
        self.poll()
        return n_trades + n_other["queued"]

    def publish_bars(self, bars: Iterable[MinuteBar], received_ms: int | None = None) -> int:
        """Produce minute bars (e.g. from REST), deduplicated like streamed ones."""
        events = [Event("AM", b.symbol, b.start_ms, encode(b)) for b in bars]
        return self.publish_events(events, received_ms or int(time.time() * 1000))

    def _is_new_bar(self, symbol: str, start_ms: int, payload: bytes) -> bool:
        last = self.last_bar_start.get(symbol)
        if last is not None and start_ms <= last:
            what = "duplicate" if start_ms == last else "late"
            self.dead_letters.send(
                payload,
                f"{what} bar {symbol} start {start_ms}: last published bar started at {last}",
                kind=f"{what}_bar",
                key=symbol,
            )
            return False
        self.last_bar_start[symbol] = start_ms
        return True

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every queued message to be acknowledged; raise if any is not."""
        try:
            flush_or_raise(self.trade_producer, timeout_s)
            flush_or_raise(self.producer, timeout_s)
        except KafkaException:
            if self.failure is None:
                raise
        finally:
            self._report_acked()
        if self.failure is not None:
            log.error("%d messages failed delivery (see errors above)", self.delivery_errors)
            raise self.failure
