"""Route refused records to the dead-letter topic with the reason, and count them."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Producer

from tickwatch.kafka import produce
from tickwatch.metrics import DEAD_LETTERS
from tickwatch.schemas import DeadLetter, encode
from tickwatch.settings import Settings
from tickwatch.topics import DEAD_LETTER, topic_name

log = logging.getLogger(__name__)


class DeadLetterSink:
    """Sends refused records of one stage to the dead-letter topic through a shared producer."""

    def __init__(self, producer: Producer, settings: Settings, stage: str) -> None:
        self.producer = producer
        self.stage = stage
        self.topic = topic_name(DEAD_LETTER, settings)

    def send(
        self,
        raw: bytes | str,
        reason: str,
        *,
        kind: str = "invalid",
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        key: str | None = None,
    ) -> DeadLetter:
        """Publish one dead letter; `kind` is the short counter label, `reason` the full message."""
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        record = DeadLetter(
            source=self.stage,
            reason=f"{kind}: {reason}",
            raw=text,
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            received_at_ms=int(time.time() * 1000),
        )
        produce(self.producer, self.topic, encode(record), key=self.stage)
        DEAD_LETTERS.labels(self.stage, kind).inc()
        log.warning("dead letter from %s (%s): %s", self.stage, kind, reason[:300])
        return record
