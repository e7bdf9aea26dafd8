"""Route refused records to the dead-letter topic with the reason, and count them.

A dead letter is bounded whatever it refuses: it keeps the head of the raw record (at most
`kafka.dead_letter_raw_bytes` once JSON-encoded), the whole record's length and sha256, and cut
reason and key, so no input can make the dead letter itself too large for the broker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

from confluent_kafka import Producer

from tickwatch.kafka import produce
from tickwatch.metrics import DEAD_LETTERS
from tickwatch.schemas import DeadLetter, encode
from tickwatch.settings import Settings
from tickwatch.topics import DEAD_LETTER, topic_name

log = logging.getLogger(__name__)
MAX_REASON_CHARS = 2000  # a validation message quoting a huge input stays readable and bounded
MAX_KEY_CHARS = 256


def _encoded_size(text: str) -> int:
    """Bytes `text` takes as a JSON string in a wire record."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "replace"))


def bounded_raw(raw: bytes | str, limit: int) -> tuple[str, int, str, bool]:
    """(head as text, whole length in bytes, whole sha256, cut?) with the head's JSON <= limit."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    cut = len(data) > limit
    head = data[:limit].decode("utf-8", "replace")
    size = _encoded_size(head)
    while size > limit:  # escapes and replacement characters take more room than their bytes
        cut = True
        head = head[: max(0, len(head) * limit // size - 1)]
        size = _encoded_size(head)
    return head, len(data), hashlib.sha256(data).hexdigest(), cut


class DeadLetterSink:
    """Sends refused records of one stage to the dead-letter topic through a shared producer."""

    def __init__(self, producer: Producer, settings: Settings, stage: str) -> None:
        self.producer = producer
        self.stage = stage
        self.topic = topic_name(DEAD_LETTER, settings)
        self.raw_limit = settings.kafka.dead_letter_raw_bytes

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
        head, length, digest, truncated = bounded_raw(raw, self.raw_limit)
        record = DeadLetter(
            source=self.stage,
            reason=f"{kind}: {reason}"[:MAX_REASON_CHARS],
            raw=head,
            raw_bytes=length,
            raw_sha256=digest,
            raw_truncated=truncated,
            topic=topic,
            partition=partition,
            offset=offset,
            key=None if key is None else key[:MAX_KEY_CHARS],
            received_at_ms=int(time.time() * 1000),
        )
        produce(self.producer, self.topic, encode(record), key=self.stage)
        DEAD_LETTERS.labels(self.stage, kind).inc()
        log.warning(
            "dead letter from %s (%s, %d bytes): %s", self.stage, kind, length, reason[:300]
        )
        return record
