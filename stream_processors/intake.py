"""Bar records into the aligner, for both engines: decode, verdict, counters and dead letters."""

from __future__ import annotations

from typing import Any, NamedTuple

from stream_processors.alignment import ACCEPTED, DUPLICATE, OUT_OF_ORDER, REPLAYED, MarketAligner
from stream_processors.bar_decode import decode_bar
from tickwatch.dead_letter import DeadLetterSink
from tickwatch.kafka import INGEST_HEADER
from tickwatch.metrics import DUPLICATES
from tickwatch.schemas import SchemaError


class BarStamps(NamedTuple):
    """When an accepted bar entered the pipeline (its ingest header) and the bars topic (its
    append time, Unix ms): the starts of the latencies the features stage records."""

    ingest: bytes | None
    appended_ms: int | None


class BarIntake:
    """Offers each bar record to the aligner; refused records go to the dead-letter topic."""

    def __init__(self, aligner: MarketAligner, dead: DeadLetterSink, stage: str) -> None:
        self.aligner = aligner
        self.dead = dead
        self.stage = stage
        self.stamps: dict[tuple[str, int], BarStamps] = {}  # of accepted bars, until emitted

    def offer(
        self,
        value: bytes | None,
        topic: str | None,
        partition: int,
        offset: int,
        headers: Any,
        appended_ms: int | None,
        touched: set[str],
    ) -> None:
        """Queue one record's bar; add its symbol to `touched` when it was accepted.

        `appended_ms` is the record's LogAppendTime (None if its topic does not stamp arrival).
        """
        try:
            bar = decode_bar(value or b"")
        except SchemaError as exc:
            self.dead.send(
                value or b"",
                str(exc),
                kind="invalid",
                topic=topic,
                partition=partition,
                offset=offset,
            )
            return
        slot = self.aligner.slot(bar.symbol)
        verdict = self.aligner.offer(slot, bar.symbol, bar, partition, offset)
        if verdict == ACCEPTED:
            touched.add(bar.symbol)
            ingest = header(headers, INGEST_HEADER)
            if ingest is not None or appended_ms is not None:
                self.stamps[(bar.symbol, bar.start_ms)] = BarStamps(ingest, appended_ms)
        elif verdict in (DUPLICATE, REPLAYED):
            DUPLICATES.labels(self.stage, verdict).inc()
        elif verdict == OUT_OF_ORDER:
            self.dead.send(
                value or b"",
                f"{bar.symbol} bar {bar.start_ms} is not after the last accepted bar "
                f"{slot.last_start()}",
                kind="out_of_order",
                topic=topic,
                partition=partition,
                offset=offset,
                key=bar.symbol,
            )


def header(headers: Any, name: str) -> bytes | None:
    """A header's value from a Faust (dict or pairs) or confluent-kafka (pairs) message."""
    items = headers.items() if isinstance(headers, dict) else headers or ()
    for key, value in items:
        if key == name:
            return value
    return None
