"""Publish parsed Polygon events to Kafka: batched, keyed by symbol, stamped with event time.

Minute bars are deduplicated per symbol (a bar is published only if it starts after the last one
published), so a reconnect that replays or backfills bars never writes one twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, Message, Producer

from producers.parsing import Event, FrameError, ParsedFrame, parse_frame
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import INGEST_HEADER, flush_or_raise, make_producer, produce
from tickwatch.metrics import BYTES_IN, DELIVERY_LATENCY, ERRORS, EVENTS_IN, EVENTS_OUT
from tickwatch.schemas import MinuteBar, encode
from tickwatch.settings import Settings
from tickwatch.topics import BARS, QUOTES, TRADES, topic_name

log = logging.getLogger(__name__)
LATENCY_SAMPLE = 16  # observe the delivery latency of one acknowledged message in this many


class Publisher:
    """Sends events of one stage through one idempotent producer; refused input is dead-lettered."""

    def __init__(self, settings: Settings, stage: str = "producer",
                 producer: Producer | None = None) -> None:
        self.stage = stage
        self.producer = producer or make_producer(settings)
        self.dead_letters = DeadLetterSink(self.producer, settings, stage)
        self.topics = {"T": topic_name(TRADES, settings), "Q": topic_name(QUOTES, settings),
                       "AM": topic_name(BARS, settings)}
        self.last_bar_start: dict[str, int] = {}
        self.acked: Counter[str] = Counter()
        self.delivery_errors = 0
        self._callbacks = {kind: self._delivery_callback(kind) for kind in self.topics}

    def _delivery_callback(self, kind: str) -> Callable[[KafkaError | None, Message], None]:
        out = EVENTS_OUT.labels(self.stage, kind)
        latency = DELIVERY_LATENCY.labels(self.stage)
        acked = self.acked

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.delivery_errors += 1
                ERRORS.labels(self.stage, "delivery").inc()
                log.error("delivery to %s failed (key %s): %s", msg.topic(), msg.key(), err)
                return
            acked[kind] += 1
            out.inc()
            if acked[kind] % LATENCY_SAMPLE == 0:
                latency.observe(msg.latency() or 0.0)

        return on_delivery

    def publish_frame(self, frame: bytes | str, received_ms: int | None = None,
                      source: str = "polygon") -> ParsedFrame:
        """Parse one WebSocket frame and publish its events; refused parts go to dead letters."""
        received_ms = received_ms or int(time.time() * 1000)
        BYTES_IN.labels(self.stage).inc(len(frame))
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
        self.publish_events(parsed.events, received_ms)
        return parsed

    def publish_events(self, events: Iterable[Event], received_ms: int) -> int:
        """Produce events (bars deduplicated per symbol); returns how many were queued."""
        headers = [(INGEST_HEADER, str(received_ms).encode())]
        seen: Counter[str] = Counter()
        queued = 0
        for ev in events:
            seen[ev.kind] += 1
            if ev.kind == "AM" and not self._is_new_bar(ev):
                continue
            produce(self.producer, self.topics[ev.kind], ev.payload, key=ev.symbol,
                    timestamp_ms=ev.timestamp_ms, on_delivery=self._callbacks[ev.kind],
                    headers=headers)
            queued += 1
        for kind, count in seen.items():
            EVENTS_IN.labels(self.stage, kind).inc(count)
        self.producer.poll(0)
        return queued

    def publish_bars(self, bars: Iterable[MinuteBar], received_ms: int | None = None) -> int:
        """Produce minute bars (e.g. from REST), deduplicated like streamed ones."""
        events = [Event("AM", b.symbol, b.start_ms, encode(b)) for b in bars]
        return self.publish_events(events, received_ms or int(time.time() * 1000))

    def _is_new_bar(self, ev: Event) -> bool:
        last = self.last_bar_start.get(ev.symbol)
        if last is not None and ev.timestamp_ms <= last:
            what = "duplicate" if ev.timestamp_ms == last else "late"
            self.dead_letters.send(
                ev.payload, f"{what} bar {ev.symbol} start {ev.timestamp_ms}: last published bar "
                f"started at {last}", kind=f"{what}_bar", key=ev.symbol)
            return False
        self.last_bar_start[ev.symbol] = ev.timestamp_ms
        return True

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every queued message to be acknowledged; raise if any is not."""
        flush_or_raise(self.producer, timeout_s)
        if self.delivery_errors:
            log.error("%d messages failed delivery (see errors above)", self.delivery_errors)
