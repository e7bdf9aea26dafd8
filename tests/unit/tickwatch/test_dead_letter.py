"""Dead letters are bounded whatever they refuse: head, length and sha256 of the raw record."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from tickwatch.dead_letter import DeadLetterSink
from tickwatch.schemas import DeadLetter, decode
from tickwatch.settings import KafkaSettings, Settings


class RecordingProducer:
    """Stands in for a confluent-kafka producer: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def produce(self, topic: str, value: bytes, key: object = None, **_: object) -> None:
        self.sent.append(value)


def _sink() -> tuple[DeadLetterSink, RecordingProducer, int]:
    settings = Settings(_env_file=None)
    producer = RecordingProducer()
    return (
        DeadLetterSink(producer, settings, "test"),
        producer,
        settings.kafka.dead_letter_raw_bytes,
    )


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps([{"ev": "XX", "pad": "z" * 5_000_000}]),  # a multi-MB text frame
        bytes(range(256)) * 8_000,  # binary: escapes and replacement characters
        "\x00" * 300_000,  # each one a 6-byte JSON escape
        "é" * 400_000 + "\ud800",  # multi-byte characters and a lone surrogate
    ],
)
def test_a_huge_raw_record_becomes_a_bounded_dead_letter(raw: str | bytes) -> None:
    sink, producer, limit = _sink()
    sink.send(raw, "unknown event " + "x" * 100_000, kind="unknown_event", key="K" * 10_000)
    (value,) = producer.sent
    assert len(value) < limit + 16_384
    letter = decode(DeadLetter, value)
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    assert letter.raw_truncated and letter.raw_bytes == len(data)
    assert letter.raw_sha256 == hashlib.sha256(data).hexdigest()
    assert len(json.dumps(letter.raw, ensure_ascii=False).encode()) <= limit
    if isinstance(raw, str) and raw.isascii() and raw.isprintable():
        assert raw.startswith(letter.raw) and len(letter.raw) > limit // 2


def test_a_small_raw_record_is_kept_whole() -> None:
    sink, producer, _ = _sink()
    sink.send(b'{"ev": "ZZ"}', "unknown event", kind="unknown_event")
    letter = decode(DeadLetter, producer.sent[0])
    assert letter.raw == '{"ev": "ZZ"}' and not letter.raw_truncated
    assert letter.raw_bytes == 12 and letter.reason == "unknown_event: unknown event"


def test_the_dead_letter_head_must_fit_a_record() -> None:
    with pytest.raises(ValidationError, match="at most half of max_message_bytes"):
        KafkaSettings(max_message_bytes=100_000, dead_letter_raw_bytes=60_000)
