"""Topics at a service's start (missing, other partitions, drifted settings); retention by arrival.

On the stack's real broker: a service whose topics are not as `tickwatch.topics` specifies exits
non-zero naming each problem; `tickwatch stack topics` (ensure_topics) creates and aligns them;
bars backfilled from before the bars topic's retention outlive the broker's retention check.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from producer_support import read_topic, replay_settings, running_replay

from ops.stack.processes import wait_until
from producers import backfill
from producers.market_sim import recent_start_day, simulate
from producers.replay_feed import split_history
from tickwatch.kafka import admin, delete_prefixed_topics, ensure_topics, make_consumer
from tickwatch.schemas import MinuteBar, decode
from tickwatch.settings import Settings, settings_to_env
from tickwatch.topic_check import TopicsUnusable, inspect_topics, require_topics
from tickwatch.topics import ALL_TOPICS, BARS, DAY_MS, DEAD_LETTER, TRADES, topic_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def bare(stack_settings: Settings, tmp_path) -> Iterator[Settings]:
    """Settings with a topic prefix of its own and no topics made for it."""
    s = stack_settings.model_copy(
        update={"topic_prefix": f"bare{uuid.uuid4().hex[:8]}-", "run_dir": tmp_path / "run"}
    )
    yield s
    delete_prefixed_topics(s)


@pytest.mark.parametrize("service", ["produce", "features", "score", "sink"])
def test_a_service_whose_topics_are_missing_exits_non_zero_naming_them(
    bare: Settings, service: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWATCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "tickwatch", service],
        env={**env, **settings_to_env(bare)},
        cwd=bare.run_dir.parent,
        capture_output=True,
        text=True,
        timeout=180,  # before the check, `produce` streamed on, lost everything and exited 0
    )
    assert done.returncode != 0, done.stderr[-2000:]
    assert f"tickwatch {service} cannot start" in done.stderr
    assert f"topic {bare.topic_prefix}dead-letter does not exist" in done.stderr
    assert "`tickwatch stack topics`" in done.stderr
    assert not set(admin(bare).list_topics(timeout=10).topics) & {
        topic_name(t, bare) for t in ALL_TOPICS
    }  # nothing was created behind the operator's back


def test_other_partitions_and_event_time_retention_are_refused_then_set(bare: Settings) -> None:
    client = admin(bare)
    futures = client.create_topics(
        [
            NewTopic(topic_name(BARS, bare), 2, 1, config=BARS.config()),  # 2, not 6
            NewTopic(
                topic_name(TRADES, bare),
                bare.kafka.default_partitions,
                1,
                config={"message.timestamp.type": "CreateTime", "retention.ms": str(DAY_MS)},
            ),
        ]
    )
    for fut in futures.values():
        fut.result(30)
    with pytest.raises(TopicsUnusable) as refused:
        require_topics(bare, (TRADES, BARS, DEAD_LETTER), "produce")
    message = str(refused.value.code)
    assert f"topic {bare.topic_prefix}bars has 2 partitions, expected 6" in message
    assert (
        f"topic {bare.topic_prefix}trades has message.timestamp.type=CreateTime, "
        "expected LogAppendTime" in message
    )
    assert f"topic {bare.topic_prefix}trades has retention.ms={DAY_MS}" in message
    assert f"topic {bare.topic_prefix}dead-letter does not exist" in message

    created = ensure_topics(bare)  # what `tickwatch stack topics` does: create, then align
    assert sorted(created) == sorted(
        topic_name(t, bare) for t in ALL_TOPICS if t not in (TRADES, BARS)
    )
    report = inspect_topics(client, bare, ALL_TOPICS)
    assert report.missing == [] and report.configs == {}
    assert report.partitions == [
        f"topic {bare.topic_prefix}bars has 2 partitions, expected 6 (change it by hand, "
        "or the setting kafka.default_partitions)"
    ]  # a partition count is the operator's to change, never tickwatch's


def test_with_create_topics_a_service_creates_its_topics_as_specified(bare: Settings) -> None:
    allowed = bare.model_copy(
        update={"kafka": bare.kafka.model_copy(update={"create_topics": True})}
    )
    require_topics(allowed, (TRADES, BARS, DEAD_LETTER), "produce")
    report = inspect_topics(admin(bare), bare, (TRADES, BARS, DEAD_LETTER))
    assert report.ok, report.lines()
    require_topics(bare, (TRADES, BARS, DEAD_LETTER), "produce")  # now it passes without


def test_backfilled_bars_older_than_the_retention_outlive_the_retention_check(
    settings: Settings,
) -> None:
    retention_days = BARS.retention_ms // DAY_MS
    long_ago = dt.date.today() - dt.timedelta(days=retention_days + 20)
    sim = simulate(["AAPL"], days=2, seed=4, start_day=recent_start_day(2, today=long_ago))
    data = split_history(sim.bars, sim.labels, history_days=1)
    assert data.history[-1].start_ms < (dt.datetime.now().timestamp() * 1000) - BARS.retention_ms
    s = replay_settings(settings).model_copy(update={"symbols": ["AAPL"]})
    with running_replay(s, data) as (_, bound):
        report = backfill.run(
            bound, ["AAPL"], sim.trading_days[0], sim.trading_days[0], progress=False
        )
    assert report.published == len(data.history) == 390

    # Evidence that the broker's retention check has run since: a topic stamped with event time
    # (as every topic was) loses an equally old record. Its log start moving is the signal.
    control = topic_name(BARS, s) + "-event-time"
    client = admin(s)
    config = {**BARS.config(), "message.timestamp.type": "CreateTime"}
    client.create_topics([NewTopic(control, 1, 1, config=config)])[control].result(30)
    producer = Producer({"bootstrap.servers": s.kafka.bootstrap_servers})
    producer.produce(control, b"old", timestamp=data.history[0].start_ms)
    assert producer.flush(30) == 0
    consumer = make_consumer(s, f"control-{uuid.uuid4().hex[:8]}")

    def deleted() -> bool:
        low, _ = consumer.get_watermark_offsets(TopicPartition(control, 0), timeout=10)
        return low > 0

    ran = wait_until(deleted, 300, 1.0)  # the stack checks retention every 10 s
    consumer.close()
    assert ran, "the broker's retention check did not delete the event-time control record"

    bars = [decode(MinuteBar, m.value()) for m in read_topic(s, BARS)]  # all of them, or it fails
    assert sorted(b.start_ms for b in bars) == [b.start_ms for b in data.history]
