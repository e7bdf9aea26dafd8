"""Helpers for the features-stage integration tests: a worker subprocess, bars in, features out."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
from metrics_support import scrape

from producers.market_sim import simulate
from stream_processors.agents import STATE_TABLE
from stream_processors.app import default_app_id
from stream_processors.batch_worker import batch_group
from stream_processors.state_codec import slot_key
from stream_processors.state_log import state_topic_spec
from tickwatch.features import compute_features_batch
from tickwatch.kafka import (
    INGEST_HEADER,
    consume_batch,
    flush_or_raise,
    make_consumer,
    make_producer,
    produce,
)
from tickwatch.schemas import DeadLetter, FeatureVector, MinuteBar, decode, encode
from tickwatch.settings import Settings, settings_to_env
from tickwatch.topics import BARS, DEAD_LETTER, FEATURES, topic_name


def recent_bars(symbols: list[str], count: int, seed: int) -> list[MinuteBar]:
    """Simulated bars of the last weekday before today (topic retention works on Kafka
    timestamps, which are the bar starts: bars from a fixed past date would be deleted)."""
    day = dt.date.today() - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return simulate(symbols, 1, seed=seed, start_day=day).bars[:count]


def start_worker(
    settings: Settings,
    log: Path,
    level: str = "WARNING",
    engine: str = "faust",
    instance: str = "w1",
    metrics_port: int = 0,
) -> subprocess.Popen:
    """`tickwatch features` (Faust or batch engine) in a subprocess that sees these settings;
    it serves its metrics on `metrics_port` (0: none)."""
    env = {
        **os.environ,
        **settings_to_env(settings),
        "TICKWATCH_PROMETHEUS__FEATURES_METRICS_PORT": str(metrics_port),
        "TICKWATCH_LOG_LEVEL": level,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tickwatch", "features", "--engine", engine, "--instance", instance],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def assert_hop_observed(port: int, vectors: int, proc: subprocess.Popen) -> None:
    """The worker observed a bars -> features hop for each vector, each no longer than the
    vector's ingest-to-emit latency (the hop starts when its bar reached the topic, later)."""
    hop = (("hop", "bars_to_features"),)
    stage = (("stage", "features"),)
    deadline = time.monotonic() + 30  # the last step's counters follow its acknowledgement
    while True:
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        got = scrape(port)
        count = got.get(("tickwatch_hop_latency_seconds_count", hop), 0.0)
        if count >= vectors or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert count == vectors
    assert got[("tickwatch_event_to_emit_seconds_count", stage)] == vectors
    hop_sum = got[("tickwatch_hop_latency_seconds_sum", hop)]
    assert 0 < hop_sum <= got[("tickwatch_event_to_emit_seconds_sum", stage)]


def stop_worker(proc: subprocess.Popen, kill: bool = False) -> None:
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def send_bars(settings: Settings, bars: Iterable[MinuteBar]) -> None:
    """Produce bars keyed by symbol, Kafka timestamp = bar start, with the ingest header."""
    producer = make_producer(settings)
    for bar in bars:
        produce(
            producer,
            topic_name(BARS, settings),
            encode(bar),
            key=bar.symbol,
            timestamp_ms=bar.start_ms,
            headers=[(INGEST_HEADER, str(int(time.time() * 1000)).encode())],
        )
    flush_or_raise(producer)


class FeatureReader:
    """Reads the features topic from the start; keeps every vector and the headers.

    `messages` counts distinct topic offsets, so a consumer-group rebalance that makes the
    reader fetch some messages twice is not mistaken for duplicates in the topic.
    """

    def __init__(self, settings: Settings, group: str) -> None:
        self.consumer = make_consumer(settings, f"{group}-{uuid.uuid4().hex[:8]}")
        self.consumer.subscribe([topic_name(FEATURES, settings)])
        self.vectors: dict[tuple[str, int], FeatureVector] = {}
        self.offsets: set[tuple[int, int]] = set()
        self.headers_ok = True

    @property
    def messages(self) -> int:
        return len(self.offsets)

    def read_until(self, keys: int, timeout_s: float, proc: subprocess.Popen | None = None) -> int:
        """Read until `keys` distinct (symbol, bar) vectors are in, or time out."""
        deadline = time.monotonic() + timeout_s
        while len(self.vectors) < keys and time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            for msg in consume_batch(self.consumer, 2000, 0.5):
                vec = decode(FeatureVector, msg.value())
                assert msg.key().decode() == vec.symbol
                assert msg.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME  # retention by arrival
                self.headers_ok &= INGEST_HEADER in dict(msg.headers() or [])
                self.vectors[(vec.symbol, vec.bar_start_ms)] = vec
                self.offsets.add((msg.partition(), msg.offset()))
        return len(self.vectors)

    def close(self) -> None:
        self.consumer.close()


def expected_features(settings: Settings, bars: list[MinuteBar]) -> dict[tuple[str, int], tuple]:
    """(symbol, start) -> (features, warm) from the pure batch computation."""
    return {
        (b.symbol, b.start_ms): (f, warm)
        for b, f, warm in compute_features_batch(
            bars, settings.features.market_symbol, settings.features.beta_window
        )
    }


def read_dead_letters(settings: Settings, timeout_s: float = 10.0) -> list[DeadLetter]:
    consumer = make_consumer(settings, "dead-letter-check")
    consumer.subscribe([topic_name(DEAD_LETTER, settings)])
    out: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msgs = consume_batch(consumer, 500, 1.0)
        out += [decode(DeadLetter, m.value()) for m in msgs]
        if out and not msgs:
            break
    consumer.close()
    return out


def kill9_mid_stream(
    settings: Settings, bars: list[MinuteBar], tmp_path: Path, engine: str
) -> tuple[FeatureReader, int]:
    """Stream bars (40 every 0.1 s) to a worker, kill -9 it mid-stream, restart it (INFO log in
    tmp_path/restarted.log) and read until every expected vector is in; (reader, vectors seen
    when the worker was killed). The reader is closed."""
    expected = {(b.symbol, b.start_ms) for b in bars}
    sender = threading.Thread(
        target=lambda: [
            (send_bars(settings, bars[i : i + 40]), time.sleep(0.1))
            for i in range(0, len(bars), 40)
        ]
    )
    proc = start_worker(settings, tmp_path / "worker.log", engine=engine)
    reader = FeatureReader(settings, "check")
    try:
        sender.start()
        reader.read_until(200, 120, proc)
        # every symbol's state is in the changelog, so the restart must recover all of them
        wait_for_state(settings, engine, {b.symbol for b in bars}, 60, proc)
        stop_worker(proc, kill=True)  # while bars are still arriving
        killed_at = len(reader.vectors)
        proc = start_worker(settings, tmp_path / "restarted.log", "INFO", engine=engine)
        sender.join()
        assert reader.read_until(len(expected), 150, proc) == len(expected)
        reader.read_until(len(expected) + 1, 3, proc)  # anything more would be a repeat
    finally:
        sender.join()
        stop_worker(proc)
        reader.close()
    return reader, killed_at


def state_keys(settings: Settings, engine: str) -> tuple[str, Callable[[str], bytes]]:
    """The engine's state changelog topic and its key for a symbol's slot."""
    if engine == "faust":
        topic = f"{default_app_id(settings)}-{STATE_TABLE}-changelog"
        return topic, lambda symbol: json.dumps(symbol).encode()
    return state_topic_spec(batch_group(settings), settings).name, slot_key


def wait_for_state(
    settings: Settings, engine: str, symbols: set[str], timeout_s: float, proc: subprocess.Popen
) -> None:
    """Wait until the worker's state changelog holds a (committed) slot for every symbol."""
    topic, key = state_keys(settings, engine)
    wanted = {key(s) for s in symbols}
    consumer = make_consumer(
        settings, f"state-check-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout_s
    try:
        consumer.subscribe([topic])
        while not wanted <= seen:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            assert time.monotonic() < deadline, f"state of {wanted - seen} never persisted"
            seen.update(m.key() or b"" for m in consume_batch(consumer, 2000, 0.5))
    finally:
        consumer.close()


def recovered_counts(log: Path) -> list[int]:
    """How many symbols the worker recovered, at each assignment it logged."""
    return [int(n) for n in re.findall(r"features: (\d+) symbols recovered", log.read_text())]
