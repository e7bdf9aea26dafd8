"""The batch engine's state changelog: a compacted topic co-partitioned with the bars topic.

Each step writes the slots and minute profiles it changed (stream_processors.state_codec) to the
partition of the bar that changed them, inside the same Kafka transaction as the step's outputs
and consumer offsets; on assignment a worker reads its partitions back from the beginning.
"""

from __future__ import annotations

import logging
import uuid

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from stream_processors.alignment import Slot
from stream_processors.state_codec import (
    decode_profile,
    decode_slot,
    encode_profile,
    encode_slot,
    profile_key,
    slot_key,
)
from tickwatch.kafka import consume_batch, ensure_topics, make_consumer
from tickwatch.settings import Settings
from tickwatch.topics import BARS, TopicSpec, partitions_for

log = logging.getLogger(__name__)


def state_topic_spec(group: str, settings: Settings) -> TopicSpec:
    """Compacted, as many partitions as the bars topic (the name is the group, not prefixed)."""
    return TopicSpec(
        f"{group}-state",
        "s|SYMBOL or p|SYMBOL|MINUTE",
        "binary slot or profile",
        partitions=partitions_for(BARS, settings),
        cleanup_policy="compact",
        doc="batch features engine state",
    )


def ensure_state_topic(group: str, settings: Settings) -> str:
    spec = state_topic_spec(group, settings)
    ensure_topics(settings.model_copy(update={"topic_prefix": ""}), [spec])
    return spec.name


def dirty_records(slots: dict[str, Slot], dirty: set[str]) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) for every changed slot and minute profile; clears the marks."""
    records = []
    for symbol in dirty:
        slot = slots[symbol]
        records.append((slot.partition, slot_key(symbol), encode_slot(slot)))
        for minute in slot.changed_minutes:
            value = encode_profile(slot, minute)
            records.append((slot.partition, profile_key(symbol, minute), value))
        slot.changed_minutes.clear()
    dirty.clear()
    return records


def read_slots(settings: Settings, topic: str, partitions: list[int]) -> dict[str, Slot]:
    """Every symbol's last committed slot and profiles on these partitions of the state topic."""
    if not partitions:
        return {}
    consumer = make_consumer(
        settings, f"state-reader-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    try:
        ends: dict[int, int] = {}
        tps = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                ends[p] = high
                tps.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        latest: dict[bytes, bytes | None] = {}
        if tps:
            consumer.assign(tps)
            while ends:
                for msg in consume_batch(consumer, 5000, 1.0):
                    latest[msg.key()] = msg.value()
                    if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                        ends.pop(msg.partition(), None)
                _drop_reached(consumer, topic, ends)
    finally:
        consumer.close()
    return _slots_from(latest)


def _drop_reached(consumer, topic: str, ends: dict[int, int]) -> None:  # type: ignore[no-untyped-def]
    """Partitions whose position reached the end (transaction markers are not messages)."""
    if not ends:
        return
    for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
        if tp.offset >= ends[tp.partition]:
            ends.pop(tp.partition, None)


def _slots_from(latest: dict[bytes, bytes | None]) -> dict[str, Slot]:
    slots: dict[str, Slot] = {}
    profiles: list[tuple[str, int, bytes]] = []
    for key, value in latest.items():
        if value is None:
            continue
        kind, _, rest = key.decode().partition("|")
        if kind == "s":
            slots[rest] = decode_slot(rest, value)
        elif kind == "p":
            symbol, _, minute = rest.rpartition("|")
            profiles.append((symbol, int(minute), value))
    for symbol, minute, value in profiles:
        if symbol in slots:
            slots[symbol].state.tod[minute] = decode_profile(value)
    return slots
