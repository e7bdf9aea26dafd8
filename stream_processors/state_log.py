"""The batch engine's state changelog: a compacted topic co-partitioned with the bars topic.

Each step writes the slots and minute profiles it changed (stream_processors.state_codec) to the
partition of the bar that changed them, inside the same Kafka transaction as the step's outputs
and consumer offsets; on assignment a worker reads its partitions back from the beginning.
"""

from __future__ import annotations

import logging

from stream_processors.alignment import Slot
from stream_processors.state_codec import (
    decode_profile,
    decode_slot,
    dirty_state,
    profile_key,
    slot_key,
)
from tickwatch.kafka import ensure_topics, read_latest
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
    return [
        (partition, slot_key(symbol) if minute is None else profile_key(symbol, minute), value)
        for partition, symbol, minute, value in dirty_state(slots, dirty)
    ]


def read_slots(settings: Settings, topic: str, partitions: list[int]) -> dict[str, Slot]:
    """Every symbol's last committed slot and profiles on these partitions of the state topic."""
    return _slots_from(read_latest(settings, topic, partitions))


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
            symbol, _, minute_text = rest.rpartition("|")
            profiles.append((symbol, int(minute_text), value))
    for symbol, minute, value in profiles:
        if symbol in slots:
            slots[symbol].state.tod[minute] = decode_profile(value)
    return slots
