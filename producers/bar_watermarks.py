"""The newest bar in the bars topic per symbol, so a restarted producer can fill its gap."""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import TopicPartition

from tickwatch.kafka import make_consumer
from tickwatch.schemas import MinuteBar, SchemaError, decode
from tickwatch.settings import Settings
from tickwatch.topics import BARS, topic_name

log = logging.getLogger(__name__)
TAIL_PER_PARTITION = 5000  # bars read back from the end of each partition


def last_bar_starts(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """Newest bar start per symbol among the last TAIL_PER_PARTITION bars of every partition."""
    topic = topic_name(BARS, settings)
    consumer = make_consumer(settings, f"tickwatch-watermarks-{uuid.uuid4().hex[:8]}")
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        ends, starts = {}, []
        for p in meta.partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if hi > lo:
                ends[p] = hi
                starts.append(TopicPartition(topic, p, max(lo, hi - TAIL_PER_PARTITION)))
        if not starts:
            return {}
        consumer.assign(starts)
        last: dict[str, int] = {}
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                log.warning("bars topic tail not fully read within %ss", timeout_s)
                break
            for m in consumer.consume(1000, 0.5):  # returns early only with 1000 messages
                offset, partition, value = m.offset(), m.partition(), m.value()
                if m.error() is not None or offset is None or partition is None or not value:
                    continue
                if offset + 1 >= ends[partition]:
                    done.add(partition)
                try:
                    bar = decode(MinuteBar, value)
                except SchemaError:
                    continue  # not ours to judge here; the features stage dead-letters it
                last[bar.symbol] = max(last.get(bar.symbol, 0), bar.start_ms)
        return last
    finally:
        consumer.close()
