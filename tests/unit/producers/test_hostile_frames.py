"""Each hostile frame of the fault drill earns exactly its dead-letter kind, publishes nothing."""

from __future__ import annotations

from producers.hostile_frames import expected_dead_letters, hostile_frames
from tickwatch.metrics import DEAD_LETTERS


def test_every_hostile_frame_is_dead_lettered_with_its_kind(offline_publisher) -> None:
    publisher = offline_publisher("unit-hostile")
    kinds = expected_dead_letters(2)
    before = {k: DEAD_LETTERS.labels("unit-hostile", k)._value.get() for k in kinds}
    for _ in range(2):
        for _kind, frame in hostile_frames():
            publisher.publish_frame(frame)
    after = {k: DEAD_LETTERS.labels("unit-hostile", k)._value.get() - before[k] for k in kinds}
    assert after == dict(kinds)
    assert len(publisher.trade_producer) == 0
    assert len(publisher.producer) == sum(kinds.values())  # only the dead letters are queued
