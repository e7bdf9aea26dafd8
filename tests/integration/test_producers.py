"""Producer against the replay server over real sockets and the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
from metrics_support import grown, histogram
from producer_support import read_topic, replay_settings, running_replay
from prometheus_client import REGISTRY
from pydantic import SecretStr
from websockets.asyncio.server import serve

from producers.market_sim import recent_start_day, simulate, trades_for
from producers.polygon_ws import Producer
from producers.publisher import Publisher
from producers.replay_feed import ReplayData, load_replay_data, load_resumed, split_history
from producers.upstream import REPLAY_COMPLETE, upstream_for
from tickwatch.kafka import INGEST_HEADER
from tickwatch.schemas import DeadLetter, MinuteBar, Trade, decode
from tickwatch.topics import BARS, DEAD_LETTER, TRADES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
SYMBOLS = ["AAPL", "TSLA", "VOO"]


def _data(days: int = 1, history_days: int = 1, seed: int = 5):
    # recent dates, as the replay server streams: Kafka drops records older than retention
    n = history_days + days
    sim = simulate(SYMBOLS, days=n, seed=seed, start_day=recent_start_day(n))
    return split_history(sim.bars, sim.labels, history_days)


def _produce(settings, exit_at_end: bool = True) -> Producer:
    publisher = Publisher(settings)
    producer = Producer(settings, upstream_for(settings), publisher)
    asyncio.run(asyncio.wait_for(producer.run(exit_at_end=exit_at_end), 120))
    publisher.flush()
    return producer


def _bars(settings) -> list[MinuteBar]:
    return [decode(MinuteBar, m.value()) for m in read_topic(settings, BARS)]


def test_stream_lands_in_kafka_exactly(settings) -> None:
    data = _data()
    s = replay_settings(settings, speed=0.0).model_copy(update={"symbols": SYMBOLS})
    hop_before = histogram("tickwatch_hop_latency_seconds", hop="feed_to_bars")
    with running_replay(s, data) as (_, bound):
        producer = _produce(bound)
    assert producer.reconnects == 0
    bar_msgs = read_topic(s, BARS)
    bars = [decode(MinuteBar, m.value()) for m in bar_msgs]
    assert sorted(bars, key=lambda b: (b.start_ms, b.symbol)) == data.live
    # each bar's hop, feed receipt (its ingest header) to its append to the topic, observed once
    hops = [(m.timestamp()[1] - int(dict(m.headers())[INGEST_HEADER])) / 1000 for m in bar_msgs]
    assert all(m.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME for m in bar_msgs) and min(hops) >= 0
    count, total = grown(histogram("tickwatch_hop_latency_seconds", hop="feed_to_bars"), hop_before)
    assert count == len(bars)
    assert total == pytest.approx(sum(hops), abs=1e-6 * len(bars))
    trade_msgs = read_topic(s, TRADES)
    expected = sorted(
        (t for b in data.live for t in trades_for(b)),
        key=lambda t: (t.symbol, t.timestamp_ms, t.sequence),
    )
    got = sorted(
        (decode(Trade, m.value()) for m in trade_msgs),
        key=lambda t: (t.symbol, t.timestamp_ms, t.sequence),
    )
    assert got == expected
    m = trade_msgs[0]
    trade = decode(Trade, m.value())
    assert m.key() == trade.symbol.encode() and m.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME
    assert int(dict(m.headers())[INGEST_HEADER]) > trade.timestamp_ms


def test_dropped_connection_is_backfilled_without_gap_or_duplicate(settings) -> None:
    data = _data(seed=9)
    # 390 minutes at 0.01 s each; the server aborts the connection after 80 frames, and the first
    # two REST calls get HTTP 429, so the gap is refilled only after backing off
    s = replay_settings(settings, speed=6000.0).model_copy(update={"symbols": SYMBOLS})
    with running_replay(s, data, drop_after_frames=80, rest_fail_first=2) as (_, bound):
        producer = _produce(bound)
    assert producer.reconnects == 1 and producer.backfilled > 0
    bars = _bars(s)
    keys = [(b.symbol, b.start_ms) for b in bars]
    assert len(keys) == len(set(keys)), "duplicate bars"
    assert sorted(keys) == sorted((b.symbol, b.start_ms) for b in data.live), "gap in bars"
    by_key = {(b.symbol, b.start_ms): b for b in bars}
    for want in data.live:  # same bars as an uninterrupted run (only `source` tells them apart)
        got = by_key[(want.symbol, want.start_ms)]
        assert got.model_copy(update={"source": "replay"}) == want
    assert sum(b.source == "rest" for b in bars) == producer.backfilled
    assert read_topic(s, DEAD_LETTER) == []  # REST and stream did not even overlap


def test_restarted_producer_fills_the_gap_from_the_bars_topic(settings) -> None:
    data = _data(seed=10)
    s = replay_settings(settings, speed=3000.0).model_copy(update={"symbols": SYMBOLS})
    with running_replay(s, data) as (server, bound):
        first = Publisher(bound)
        with pytest.raises(TimeoutError):  # the producer is stopped mid-stream...
            asyncio.run(
                asyncio.wait_for(
                    Producer(bound, upstream_for(bound), first).run(exit_at_end=True), 1.5
                )
            )
        first.flush()
        assert not server.finished.is_set()
        restarted = Producer(bound, upstream_for(bound), Publisher(bound))  # ...and restarted
        restarted.resume_from_topic()
        asyncio.run(asyncio.wait_for(restarted.run(exit_at_end=True), 120))
        restarted.publisher.flush()
    assert restarted.backfilled > 0
    keys = sorted((b.symbol, b.start_ms) for b in _bars(s))
    assert keys == sorted((b.symbol, b.start_ms) for b in data.live)  # no gap, no duplicate


def test_a_rerun_of_the_replay_streams_only_what_the_last_run_did_not(settings) -> None:
    s = replay_settings(settings, speed=0.0, seed=11, days=1, history_days=1)
    s = s.model_copy(update={"symbols": SYMBOLS})
    data = load_replay_data(s)
    first_part = 100 * len(SYMBOLS)  # the first run stops after 100 minutes
    with running_replay(s, ReplayData(data.history, data.live[:first_part])) as (_, bound):
        _produce(bound)

    resumed = load_resumed(s)  # what a restarted `tickwatch replay-server` serves
    assert resumed.streamed == data.live[:first_part] and resumed.live == data.live[first_part:]
    off = s.model_copy(update={"replay": s.replay.model_copy(update={"resume": False})})
    assert load_resumed(off) == data

    with running_replay(s, resumed) as (_, bound):
        producer = Producer(bound, upstream_for(bound), Publisher(bound))
        producer.resume_from_topic()
        asyncio.run(asyncio.wait_for(producer.run(exit_at_end=True), 120))
        producer.publisher.flush()
    assert producer.backfilled == 0
    assert sorted(_bars(s), key=lambda b: (b.start_ms, b.symbol)) == data.live
    assert read_topic(s, DEAD_LETTER) == []  # nothing streamed twice, nothing late


def test_wrong_key_exits_nonzero_with_a_clear_message(settings) -> None:
    s = replay_settings(settings, required_key=SecretStr("right-key"))
    with running_replay(s, _data()) as (_, bound):
        env = dict(
            os.environ,
            TICKWATCH_POLYGON__API_KEY="wrong-key",
            TICKWATCH_POLYGON__WS_URL=f"ws://127.0.0.1:{bound.replay.port}/stocks",
            TICKWATCH_POLYGON__REST_URL=f"http://127.0.0.1:{bound.replay.port}",
            TICKWATCH_TOPIC_PREFIX=s.topic_prefix,
            TICKWATCH_PROMETHEUS__PRODUCER_METRICS_PORT="0",
            TICKWATCH_RUN_DIR=str(s.run_dir),
        )
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "tickwatch"), "produce"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    assert "auth_failed" in proc.stderr and "TICKWATCH_POLYGON__API_KEY" in proc.stderr


def test_malformed_frames_are_dead_lettered_with_reason(settings) -> None:
    good = {
        "ev": "T",
        "sym": "AAPL",
        "p": 190.5,
        "s": 10,
        # a recent time: Kafka deletes records older than the topic's retention (7 days for
        # trades) on its next retention check, and the test would find the topic empty
        "t": int(time.time() * 1000) - 60_000,
        "x": 4,
        "i": "1",
        "z": 3,
        "q": 1,
    }
    frames = [
        "{not json",
        json.dumps([good, dict(good, p=-3.0)]),
        json.dumps([{"ev": "ZZ", "sym": "AAPL"}, dict(good, p=float("nan"))]),
        json.dumps([{"ev": "status", "status": REPLAY_COMPLETE, "message": "end"}]),
    ]

    async def feed(ws) -> None:
        await ws.send(json.dumps([{"ev": "status", "status": "connected", "message": "hi"}]))
        await ws.recv()
        await ws.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "ok"}]))
        await ws.recv()
        for f in frames:
            await ws.send(f)
        await ws.wait_closed()

    def counted(reason: str) -> float:
        return (
            REGISTRY.get_sample_value(
                "tickwatch_dead_letters_total", {"stage": "producer", "reason": reason}
            )
            or 0.0
        )

    before = {k: counted(k) for k in ("bad_frame", "invalid", "unknown_event")}

    async def main() -> Producer:
        async with serve(feed, "127.0.0.1", 0) as server:
            port = list(server.sockets)[0].getsockname()[1]
            s = replay_settings(settings).model_copy(
                update={"replay": settings.replay.model_copy(update={"port": port})}
            )
            return await asyncio.to_thread(_produce, s)

    asyncio.run(main())
    letters = [decode(DeadLetter, m.value()) for m in read_topic(settings, DEAD_LETTER)]
    reasons = sorted(d.reason.split(":")[0] for d in letters)
    assert reasons == ["bad_frame", "invalid", "invalid", "unknown_event"]
    assert any("Trade.price: Input should be greater than 0" in d.reason for d in letters)
    assert any(d.raw == "{not json" for d in letters)
    assert counted("bad_frame") == before["bad_frame"] + 1
    assert counted("invalid") == before["invalid"] + 2
    assert len(read_topic(settings, TRADES)) == 1  # the one good trade still went through


def _feed_frames(settings, frames: list[str | bytes]) -> Producer:
    """Run the real producer against a WebSocket server that sends `frames`, then the end."""

    async def feed(ws) -> None:
        await ws.send(json.dumps([{"ev": "status", "status": "connected", "message": "hi"}]))
        await ws.recv()
        await ws.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "ok"}]))
        await ws.recv()
        for f in frames:
            await ws.send(f)
        await ws.send(json.dumps([{"ev": "status", "status": REPLAY_COMPLETE, "message": "end"}]))
        await ws.wait_closed()

    async def main() -> Producer:
        async with serve(feed, "127.0.0.1", 0, max_size=None) as server:
            port = list(server.sockets)[0].getsockname()[1]
            s = replay_settings(settings).model_copy(
                update={"replay": settings.replay.model_copy(update={"port": port})}
            )
            return await asyncio.to_thread(_produce, s)

    return asyncio.run(main())


def test_hostile_frames_cost_one_bounded_dead_letter_each_and_no_valid_event(settings) -> None:
    now = int(time.time() * 1000) - 60_000  # recent: older trades fall to the topic's retention
    sent_ids: list[str] = []

    def trade() -> dict:
        """A valid trade with a trade id of its own, which must reach the trades topic."""
        sent_ids.append(str(len(sent_ids)))
        return {"ev": "T", "sym": "AAPL", "p": 190.5, "s": 10, "t": now, "i": sent_ids[-1]}

    deep = "[" * 100_000 + "]" * 100_000
    frames: list[str | bytes] = [
        # a 5 MB frame: thousands of trades around one unknown event
        json.dumps(
            [*(trade() for _ in range(2000)), {"ev": "XX", "pad": "z" * 5_000_000}, trade()]
        ),
        # an element nested deeper than any JSON decoder allows, between two valid trades
        f'[{json.dumps(trade())}, {{"ev": "T", "sym": "AAPL", "x": {deep}}}, '
        f"{json.dumps(trade())}]",
        json.dumps([trade(), trade()]).encode(),  # a binary frame holding valid JSON
        b"\xff\xfe\x00\x01 binary garbage" * 1000,  # a binary frame that is not UTF-8
        json.dumps([{"ev": "ZZ", "sym": "AAPL"}, trade(), {"ev": 5}]),  # unknown events
    ]
    too_big = {"ev": "T", "sym": "AAPL", "p": 190.5, "s": 10, "t": now, "c": [1] * 600_000}
    frames.append(json.dumps([too_big, trade()]))  # a trade too big for a Kafka record
    assert len(sent_ids) == 2001 + 2 + 2 + 1 + 1

    producer = _feed_frames(settings, frames)

    assert producer.reconnects == 0  # the producer neither crashed nor dropped the connection
    trades = [decode(Trade, m.value()) for m in read_topic(settings, TRADES)]
    assert sorted(t.trade_id for t in trades) == sorted(sent_ids)
    letters = [decode(DeadLetter, m.value()) for m in read_topic(settings, DEAD_LETTER)]
    kinds = sorted(d.reason.split(":")[0] for d in letters)
    assert kinds == [
        "bad_frame",
        "too_deep",
        "too_large",
        "unknown_event",
        "unknown_event",
        "unknown_event",
    ]
    limit = settings.kafka.dead_letter_raw_bytes
    for letter in letters:
        assert len(json.dumps(letter.raw, ensure_ascii=False).encode()) <= limit
        assert letter.raw_bytes is not None and len(letter.raw_sha256 or "") == 64
    (huge,) = [d for d in letters if d.raw.startswith('{"ev": "XX"')]
    assert huge.raw_truncated and huge.raw_bytes > 5_000_000
    (big_trade,) = [d for d in letters if d.reason.startswith("too_large")]
    assert big_trade.raw_truncated and big_trade.raw_bytes > settings.kafka.max_message_bytes


def test_a_failed_delivery_stops_the_publisher_with_a_clear_error(
    stack_settings, monkeypatch
) -> None:
    from tickwatch import kafka
    from tickwatch.kafka import DeliveryFailed

    # librdkafka's retries end sooner, so the missing topic is reported within the test
    monkeypatch.setattr(kafka, "DELIVERY_TIMEOUT_MS", 3000)
    fresh = stack_settings.model_copy(update={"topic_prefix": f"missing-{uuid.uuid4().hex[:8]}-"})
    publisher = Publisher(fresh)
    frame = json.dumps([{"ev": "T", "sym": "AAPL", "p": 1.5, "s": 1, "t": int(time.time() * 1000)}])
    publisher.publish_frame(frame)
    with pytest.raises(DeliveryFailed) as failed:
        publisher.flush(timeout_s=30)
    assert failed.value.code != 0
    assert f"delivery to topic {fresh.topic_prefix}trades failed" in str(failed.value.code)
    assert publisher.delivery_errors == 1
