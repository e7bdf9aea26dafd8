"""A whole-market minute through the features stage: 10,000 symbols' bars arriving together.

The issue's goal in its own words: a whole-market minute (about 10,000 symbols) through one
features worker in under a second. A warm worker (two minutes of history already processed) gets
each following minute's bars at once; the time is from the first bar produced to the minute's
last feature vector read back. Beside it, in the same run: a bare confluent-kafka round trip of
the same 10,000 messages (produce, then consume them back) on the same broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import redis
from confluent_kafka import Producer

from benchmarks.bench_features import START_MS, fresh_settings, make_bars, send
from ops.results import Verdict, met, table, write_section
from ops.stack.redis_claim import claim_redis_db, release_redis_db
from tickwatch.kafka import (
    INGEST_HEADER,
    consume_batch,
    delete_prefixed_topics,
    flush_or_raise,
    make_consumer,
    make_producer,
    produce,
)
from tickwatch.schemas import MinuteBar, encode
from tickwatch.settings import Settings, settings_to_env
from tickwatch.topics import BARS, FEATURES, topic_name

SYMBOLS = int(os.environ.get("BENCH_MARKET_SYMBOLS", 10_000))
WARM_MINUTES, TIMED_MINUTES = 2, 4
GOAL_S = 1.0  # a whole-market minute through one worker


class _Symbol(msgspec.Struct):
    symbol: str


_symbol_of = msgspec.json.Decoder(_Symbol).decode


class _Minute(list):
    """One minute's bars, encoded before the clock starts: (symbol, start_ms, MinuteBar JSON)."""


def encoded(bars: list[MinuteBar]) -> _Minute:
    return _Minute((b.symbol, b.start_ms, encode(b)) for b in bars)


def send_minute(producer: Producer, topic: str, minute: _Minute) -> None:
    """Produce one minute's encoded bars as fast as the client can (ingest header = now)."""
    now = str(int(time.time() * 1000)).encode()
    for symbol, start_ms, value in minute:
        produce(producer, topic, value, symbol, start_ms, headers=[(INGEST_HEADER, now)])
    flush_or_raise(producer)


def _connected_producer(settings: Settings) -> Producer:
    """A producer that already has its connection and idempotent producer id."""
    producer = make_producer(settings)
    producer.list_topics(timeout=30)
    send_minute(producer, topic_name(BARS, settings), _Minute())
    return producer


def _read(consumer, n: int, timeout_s: float = 120) -> int:  # type: ignore[no-untyped-def]
    """Read until `n` messages came (returns how many)."""
    seen, deadline = 0, time.monotonic() + timeout_s
    while seen < n and time.monotonic() < deadline:
        seen += len(consume_batch(consumer, 10_000, 0.05))
    return seen


def minutes_through_worker(settings: Settings, minutes: list[list[MinuteBar]], engine: str):  # type: ignore[no-untyped-def]
    """Seconds per timed minute, from producing its bars to reading its last vector."""
    env = {
        **os.environ,
        **settings_to_env(settings),
        "TICKWATCH_LOG_LEVEL": "WARNING",
        "TICKWATCH_PROMETHEUS__FEATURES_METRICS_PORT": "0",
    }
    log = settings.run_dir.parent / f"market-{engine}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwatch", "features", "--engine", engine],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    consumer = make_consumer(settings, "bench-market")
    consumer.subscribe([topic_name(FEATURES, settings)])
    try:
        warm = [b for minute in minutes[:WARM_MINUTES] for b in minute]
        send(settings, warm)
        if _read(consumer, len(warm), 180) < len(warm):
            raise RuntimeError(f"warm-up incomplete; see {log}")
        times = []
        producer, topic = _connected_producer(settings), topic_name(BARS, settings)
        for minute in minutes[WARM_MINUTES:]:
            ready = encoded(minute)
            t0 = time.perf_counter()
            send_minute(producer, topic, ready)
            if _read(consumer, len(minute)) < len(minute):
                raise RuntimeError(f"minute incomplete; see {log}")
            times.append(time.perf_counter() - t0)
        return times
    finally:
        consumer.close()
        proc.terminate()
        proc.wait(30)


def bare_round_trips(settings: Settings, minutes: list[list[MinuteBar]]) -> list[float]:
    """The same bars produced and consumed back by a bare consumer: seconds per minute."""
    consumer = make_consumer(settings, "bench-bare-market")
    consumer.subscribe([topic_name(BARS, settings)])
    consumer.consume(1, 5)  # joined and assigned before the clock starts
    times = []
    producer, topic = _connected_producer(settings), topic_name(BARS, settings)
    for minute in minutes:
        ready = encoded(minute)
        t0 = time.perf_counter()
        send_minute(producer, topic, ready)
        if _read(consumer, len(minute)) < len(minute):
            raise RuntimeError("bare round trip incomplete")
        times.append(time.perf_counter() - t0)
    consumer.close()
    return times


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-market-"))
    bars = make_bars(SYMBOLS, WARM_MINUTES + TIMED_MINUTES, START_MS)
    minutes = [bars[i : i + SYMBOLS] for i in range(0, len(bars), SYMBOLS)]
    base = Settings(_env_file=None)
    db = claim_redis_db(base, "bench-market-minute")  # no db a test run beside us could flush
    runs = {name: fresh_settings(tmp, name, db) for name in ("mbatch", "mfaust", "mbare")}
    r = redis.Redis(port=runs["mbatch"].redis.port, db=db)
    try:
        r.flushdb()
        batch = minutes_through_worker(runs["mbatch"], minutes, "batch")
        r.flushdb()
        faust = minutes_through_worker(runs["mfaust"], minutes, "faust")
        bare = bare_round_trips(runs["mbare"], minutes[WARM_MINUTES:])
    finally:
        for s in runs.values():
            delete_prefixed_topics(s)
        r.flushdb()
        release_redis_db(base, db)
    bare_s = max(bare)  # a few minutes each: the slowest, not a percentile of them
    rows = [
        (name, max(t), SYMBOLS / max(t), max(t) / bare_s)
        for name, t in (
            ("batch engine, one worker", batch),
            ("Faust engine, one worker", faust),
            ("bare produce + consume round trip, same bars", bare),
        )
    ]
    partitions = runs["mbatch"].kafka.default_partitions
    body = (
        f"{SYMBOLS:,} symbols; {WARM_MINUTES} warm-up minutes, then {TIMED_MINUTES} minutes each "
        "produced at once (encoded beforehand, so the clock sees the client's produce only) and "
        f"timed to the minute's last feature vector read back. One worker per engine, "
        f"{partitions} partitions; the broker, Redis and the bench share the {os.cpu_count()} "
        "cores.\n\n"
        + table(
            [
                "path",
                f"slowest of {TIMED_MINUTES} minutes, s",
                "bars/s (slowest minute)",
                "x bare (slowest)",
            ],
            [(n, round(x, 3), round(rate), round(ratio, 1)) for n, x, rate, ratio in rows],
        )
        + f"\n\nGoal: a whole-market minute through one worker in under {GOAL_S:g} s, every timed "
        f"minute. Batch engine: slowest of {len(batch)} minutes {max(batch):.2f} s "
        f"({met(max(batch) < GOAL_S)}); Faust engine: slowest {max(faust):.2f} s "
        f"({met(max(faust) < GOAL_S)})."
    )
    verdicts = [
        Verdict(
            f"features: a whole-market minute ({SYMBOLS:,} symbols at once), one {engine} worker",
            f"slowest of {len(times)} minutes {max(times):.2f} s",
            f"{max(times) / bare_s:.1f}x a bare produce + consume round trip "
            f"(slowest {bare_s:.3f} s)",
            f"< {GOAL_S:g} s every minute",
            met(max(times) < GOAL_S),
        )
        for engine, times in (("batch-engine", batch), ("Faust", faust))
    ]
    write_section("market-minute", "Whole-market minute through the features stage", body, verdicts)


if __name__ == "__main__":
    main()
