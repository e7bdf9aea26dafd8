"""What a drill run left behind (topics and the sink's store), and its comparison with the baseline.

Every item is keyed by what makes it unique: a bar and a feature vector by (symbol, bar start),
an anomaly by its deterministic event id. Lost = in the baseline, not in the faulted run;
duplicated = present more than once; extra = in the faulted run only.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import redis
from confluent_kafka import TopicPartition

from tickwatch.kafka import make_consumer
from tickwatch.schemas import AnomalyEvent, DeadLetter, FeatureVector, MinuteBar, decode
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, BARS, DEAD_LETTER, FEATURES, TopicSpec, topic_name

ALL_IDS = "tw:anomalies:all"
BY_SYMBOL = "tw:anomalies:symbol:"


@dataclass
class Snapshot:
    """Counts per key in each topic and in the store, and dead letters by (source, kind)."""

    bars: Counter[tuple[str, int]] = field(default_factory=Counter)
    features: Counter[tuple[str, int]] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)  # over the per-symbol sets
    bar_of: dict[str, tuple[str, int]] = field(default_factory=dict)  # event id -> bar key
    dead_letters: list[tuple[str, str, int]] = field(default_factory=list)  # source, kind, ms


def topic_size(settings: Settings, spec: TopicSpec) -> int:
    """Sum of the topic's high watermarks (a cheap progress measure)."""
    name = topic_name(spec, settings)
    consumer = make_consumer(settings, f"drill-size-{uuid.uuid4().hex[:8]}")
    try:
        parts = consumer.list_topics(name, timeout=10).topics[name].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in parts
        )
    finally:
        consumer.close()


def read_values(settings: Settings, spec: TopicSpec, timeout_s: float = 60.0) -> list[bytes]:
    """Every committed value in the topic up to its current end (read_committed)."""
    name = topic_name(spec, settings)
    consumer = make_consumer(
        settings, f"drill-read-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    try:
        parts = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in parts
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(name, p, 0) for p in pending])
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for m in consumer.consume(1000, 1.0):
                if m.error() is None:
                    out.append(m.value() or b"")
            for tp in consumer.position([TopicPartition(name, p) for p in list(pending)]):
                if tp.offset >= ends[tp.partition]:  # transaction markers count as read
                    pending.discard(tp.partition)
        if pending:
            raise TimeoutError(f"{name}: partitions {sorted(pending)} not read to the end")
        return out
    finally:
        consumer.close()


def snapshot(settings: Settings) -> Snapshot:
    """Read the run's bars, features, anomalies, dead letters and the sink's store."""
    snap = Snapshot()
    for raw in read_values(settings, BARS):
        bar = decode(MinuteBar, raw)
        snap.bars[(bar.symbol, bar.start_ms)] += 1
    for raw in read_values(settings, FEATURES):
        vec = decode(FeatureVector, raw)
        snap.features[(vec.symbol, vec.bar_start_ms)] += 1
    for raw in read_values(settings, ANOMALIES):
        event = decode(AnomalyEvent, raw)
        snap.anomalies[event.event_id] += 1
        snap.bar_of[event.event_id] = (event.symbol, event.bar_start_ms)
    for raw in read_values(settings, DEAD_LETTER):
        dl = decode(DeadLetter, raw)
        snap.dead_letters.append((dl.source, dl.reason.split(":", 1)[0], dl.received_at_ms))
    r = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)
    for key in r.scan_iter(f"{BY_SYMBOL}*"):
        # redis-py types the sync client's replies as sync | async (ResponseT)
        members = cast("list[bytes]", r.zrange(key, 0, -1))
        snap.stored.update(i.decode() for i in members)
    return snap


def store_size(settings: Settings) -> int:
    r = redis.Redis(
        settings.redis.host, settings.redis.port, db=settings.redis.db, socket_timeout=5
    )
    try:
        return cast(int, r.zcard(ALL_IDS))  # redis-py types the sync reply as sync | async
    except redis.RedisError:
        return -1


@dataclass
class Diff:
    """Loss, duplication and extras of one kind of item, within one window."""

    lost: int = 0
    dup: int = 0
    extra: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.dup == 0 and self.extra == 0

    def __str__(self) -> str:
        text = f"{self.lost}/{self.dup}"
        return text + (f" (+{self.extra})" if self.extra else "")


def diff(base: Counter, run: Counter, keep: Callable[[object], bool] = lambda _: True) -> Diff:
    """Compare keyed counts, only over keys `keep` accepts."""
    return Diff(
        lost=sum(1 for k in base if keep(k) and k not in run),
        dup=sum(n - 1 for k, n in run.items() if keep(k) and n > 1),
        extra=sum(1 for k in run if keep(k) and k not in base),
    )


def dead_letter_kinds(
    items: Iterable[tuple[str, str, int]], keep: Callable[[int], bool] = lambda _: True
) -> Counter[tuple[str, str]]:
    """Dead letters by (source, kind), only those received at times `keep` accepts."""
    return Counter((src, kind) for src, kind, ms in items if keep(ms))


def unexplained(got: Counter, expected: Counter) -> Counter:
    """Dead letters neither the baseline nor the malformed burst accounts for (+ or - counts)."""
    keys = set(got) | set(expected)
    return Counter({k: got[k] - expected[k] for k in keys if got[k] != expected[k]})
