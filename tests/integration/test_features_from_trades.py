"""`tickwatch features --bars-from-trades`: trades -> bars topic -> features, on real Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from features_support import FeatureReader, recent_bars, stop_worker

from producers.market_sim import trades_for
from tickwatch.kafka import consume_batch, flush_or_raise, make_consumer, make_producer, produce
from tickwatch.schemas import MINUTE_MS, MinuteBar, decode, encode
from tickwatch.settings import Settings, settings_to_env
from tickwatch.topics import BARS, TRADES, topic_name

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_trades_become_bars_and_features(settings: Settings, tmp_path) -> None:
    source = recent_bars(["AAPL", "VOO"], 40, seed=9)
    trades = sorted((t for b in source for t in trades_for(b)), key=lambda t: t.timestamp_ms)
    producer = make_producer(settings)
    for t in trades:
        produce(
            producer,
            topic_name(TRADES, settings),
            encode(t),
            key=t.symbol,
            timestamp_ms=t.timestamp_ms,
        )
    flush_or_raise(producer)
    lateness_ms = settings.features.allowed_lateness_s * 1000
    watermark = {s: max(t.timestamp_ms for t in trades if t.symbol == s) for s in ("AAPL", "VOO")}
    closed = [
        b
        for b in source
        if trades_for(b) and b.start_ms + MINUTE_MS + lateness_ms <= watermark[b.symbol]
    ]
    assert closed

    env = {
        **os.environ,
        **settings_to_env(settings),
        "TICKWATCH_LOG_LEVEL": "WARNING",
        "TICKWATCH_PROMETHEUS__FEATURES_METRICS_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwatch", "features", "--bars-from-trades"],
        env=env,
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    reader = FeatureReader(settings, "check")
    consumer = make_consumer(settings, "bars-check")
    consumer.subscribe([topic_name(BARS, settings)])
    built: dict[tuple[str, int], MinuteBar] = {}
    try:
        deadline = time.monotonic() + 120
        while len(built) < len(closed) and time.monotonic() < deadline:
            for m in consume_batch(consumer, 1000, 0.5):
                bar = decode(MinuteBar, m.value())
                built[(bar.symbol, bar.start_ms)] = bar
        assert reader.read_until(len(closed), 60, proc) >= len(closed)
    finally:
        consumer.close()
        stop_worker(proc)
        reader.close()
    assert set(built) == {(b.symbol, b.start_ms) for b in closed}
    for b in closed:
        got = built[(b.symbol, b.start_ms)]
        assert (got.open, got.close, got.volume) == pytest.approx(
            (b.open, b.close, b.volume), abs=1e-4
        )
        assert got.source == "trades"
    assert set(reader.vectors) == set(built)
