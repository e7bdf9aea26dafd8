"""Features stage throughput: bars/s through a `tickwatch features` worker (Feast write included).

Beside it, in the same run: a bare confluent-kafka consume loop over the same bars topic, and the
parts of the stage alone (feature math per bar, the batched Feast online write per row).
"""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import redis

from benchmarks.common import Timer
from feature_repo.feature_store import get_store
from ops.results import Verdict, met, table, write_section
from ops.stack.redis_claim import claim_redis_db, release_redis_db
from stream_processors.feast_push import FeatureRow, OnlineWriter
from tickwatch.features import FEATURE_NAMES, Bar, SymbolState
from tickwatch.kafka import (
    INGEST_HEADER,
    consume_batch,
    delete_prefixed_topics,
    ensure_topics,
    flush_or_raise,
    make_consumer,
    make_producer,
    produce,
)
from tickwatch.schemas import MinuteBar, encode
from tickwatch.settings import Settings, settings_to_env
from tickwatch.topics import BARS, FEATURES, topic_name

SYMBOLS = int(os.environ.get("BENCH_FEATURES_SYMBOLS", 4000))
MINUTES = int(os.environ.get("BENCH_FEATURES_MINUTES", 10))
START_MS = (int(time.time() * 1000) // 60_000 - 24 * 60) * 60_000  # yesterday: inside retention
GOAL_BARS_S = 20_000  # per worker
# the stage's reader and the bare loop read alike; asking for no more than is left, the last
# read returns with the last message instead of waiting out its timeout
READ_BATCH, READ_WAIT_S = 5000, 0.2


def make_bars(symbols: int, minutes: int, start_ms: int) -> list[MinuteBar]:
    """`minutes` whole-market minutes of `symbols` symbols (VOO included), in time order."""
    rnd = random.Random(1)
    names = ["VOO", *(f"S{i:05d}" for i in range(symbols - 1))]
    price = {s: rnd.uniform(10, 500) for s in names}
    bars = []
    for m in range(minutes):
        for s in names:
            p0, p = price[s], price[s] * math.exp(rnd.gauss(0, 0.002))
            price[s] = p
            bars.append(
                MinuteBar(
                    symbol=s,
                    start_ms=start_ms + m * 60_000,
                    end_ms=start_ms + m * 60_000 + 59_999,
                    open=p0,
                    high=max(p0, p) * 1.001,
                    low=min(p0, p) * 0.999,
                    close=p,
                    volume=rnd.uniform(1e3, 1e5),
                    vwap=(p0 + p) / 2,
                    transactions=rnd.randint(1, 200),
                    source="replay",
                )
            )
    return bars


def send(settings: Settings, bars: list[MinuteBar]) -> None:
    producer = make_producer(settings)
    topic = topic_name(BARS, settings)
    for bar in bars:
        produce(
            producer,
            topic,
            encode(bar),
            key=bar.symbol,
            timestamp_ms=bar.start_ms,
            headers=[(INGEST_HEADER, str(int(time.time() * 1000)).encode())],
        )
    flush_or_raise(producer)


def bare_consume(settings: Settings, n: int, timeout_s: float = 60) -> float:
    """Seconds per message of a bare batch consume loop over the bars topic, timed as the stage
    is: from its first batch in hand to the last message read, over the messages after that
    first batch (subscribe, group join and close are outside the clock)."""
    consumer = make_consumer(settings, "bench-bare")
    consumer.subscribe([topic_name(BARS, settings)])
    seen, first, t0 = 0, 0, 0.0
    deadline = time.monotonic() + timeout_s
    while seen < n and time.monotonic() < deadline:
        msgs = consume_batch(consumer, min(READ_BATCH, n - seen), READ_WAIT_S)
        if msgs and not seen:
            t0, first = time.perf_counter(), len(msgs)
        seen += len(msgs)
    elapsed = time.perf_counter() - t0
    consumer.close()
    if seen < n:
        raise RuntimeError(f"only {seen}/{n} bars read within {timeout_s}s")
    return elapsed / (seen - first)


class _ComputedAt(msgspec.Struct):
    """The one FeatureVector field the stage timing reads (a light decode: the reader shares
    the two cores with the worker)."""

    computed_at_ms: int


_computed_at = msgspec.json.Decoder(_ComputedAt).decode


def stage_run(
    settings: Settings, bars: list[MinuteBar], log: Path, engine: str, workers: int = 1
) -> float:
    """Seconds per bar for workers catching up on the bars, all in the topic before they start.

    Timed like the bare loop (from its first output, start-up excluded): from when a worker
    computed the first step's vectors (`computed_at_ms`) to when the last vector reached this
    reader, over the bars after that first step. Several workers are started first, on the
    empty topic, and the bars are sent once they split the partitions.
    """
    if workers == 1:
        send(settings, bars)
    env = {
        **os.environ,
        **settings_to_env(settings),
        "TICKWATCH_LOG_LEVEL": "INFO",
        "TICKWATCH_PROMETHEUS__FEATURES_METRICS_PORT": "0",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tickwatch", "features", "--engine", engine]
            + ["--instance", f"bench-{i}"],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    try:
        if workers > 1:  # all in the group with their share of partitions first, then the bars
            _wait_for_split(log, workers, settings.kafka.default_partitions)
            send(settings, bars)
        consumer = make_consumer(settings, "bench-stage")
        consumer.subscribe([topic_name(FEATURES, settings)])
        computed: list[int] = []
        deadline = time.monotonic() + 180
        while len(computed) < len(bars) and time.monotonic() < deadline:
            for msg in consume_batch(
                consumer, min(READ_BATCH, len(bars) - len(computed)), READ_WAIT_S
            ):
                computed.append(_computed_at(msg.value() or b"").computed_at_ms)
        last_s = time.time()
        consumer.close()
        if len(computed) < len(bars):
            raise RuntimeError(f"worker produced {len(computed)}/{len(bars)} features; see {log}")
        first_ms = min(computed)
        after_first = len(computed) - computed.count(first_ms)
        return (last_s - first_ms / 1000) / after_first
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def _wait_for_split(log: Path, workers: int, partitions: int, timeout_s: float = 60) -> None:
    """Until the batch workers' last assignments (their INFO log) split the partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.findall(r"recovered on partitions \[([\d, ]*)\]", log.read_text())
        sizes = [len([p for p in f.split(",") if p.strip()]) for f in found[-workers:]]
        if len(sizes) == workers and sum(sizes) == partitions and all(sizes):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{workers} workers did not split the partitions; see {log}")


def faust_noop_agent(n: int) -> None:
    """Child process: a Faust agent that only counts events (take_events); prints seconds/event."""
    import faust

    from stream_processors.app import create_app
    from tickwatch.settings import get_settings

    settings = get_settings()
    app = create_app(settings, app_id=f"{settings.topic_prefix}bench-noop")
    topic = app.topic(
        topic_name(BARS, settings),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    seen: dict[str, float] = {"n": 0}

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        batch = 5 * settings.kafka.consume_batch
        # take_events is on faust's Stream (what agents get), not on the StreamT protocol
        async for events in stream.take_events(batch, within=0.02):  # type: ignore[attr-defined]
            seen.setdefault("t0", time.perf_counter())
            seen["n"] += len(events)
            if seen["n"] >= n:
                print(f"NOOP {(time.perf_counter() - seen['t0']) / n}", flush=True)
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def faust_noop(settings: Settings, n: int) -> float:
    """Seconds per event through Faust alone (same app config, an agent that does nothing)."""
    env = {**os.environ, **settings_to_env(settings), "TICKWATCH_LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_features", "--faust-noop", str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"NOOP (\S+)", out.stdout)
    if found:
        return float(found.group(1))
    raise RuntimeError(f"faust no-op run failed: {out.stdout[-500:]} {out.stderr[-500:]}")


def math_only(bars: list[MinuteBar]) -> float:
    """Seconds per bar for SymbolState.update alone."""
    plain = [
        Bar(b.symbol, b.start_ms, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.transactions)
        for b in bars
    ]
    states: dict[str, SymbolState] = {}
    with Timer() as t:
        for b in plain:
            st = states.get(b.symbol) or states.setdefault(b.symbol, SymbolState())
            st.update(b, 0.0)
    return t.seconds / len(bars)


def feast_only(settings: Settings, bars: list[MinuteBar], batch: int) -> float:
    """Seconds per row for the batched online write (fresh timestamps, so every row is written)."""
    writer = OnlineWriter(get_store(settings), settings)
    feats = dict.fromkeys(FEATURE_NAMES, 0.5)
    rows = [
        FeatureRow(b.symbol, b.start_ms + 10 * 86_400_000, b.close, b.volume, feats, True)
        for b in bars
    ]
    with Timer() as t:
        for i in range(0, len(rows), batch):
            writer.write(rows[i : i + batch])
    return t.seconds / len(rows)


def fresh_settings(tmp: Path, tag: str, db: int) -> Settings:
    """Settings on their own topic prefix (all topics created) and Redis db `db`."""
    base = Settings(_env_file=None)
    settings = base.model_copy(
        update={
            "topic_prefix": f"bench{tag}{uuid.uuid4().hex[:6]}-",
            "run_dir": tmp / f"run-{tag}",
            "redis": base.redis.model_copy(update={"db": db}),
        }
    )
    ensure_topics(settings)
    return settings


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    runs = {  # name: (engine, workers)
        "batch": ("batch", 1),
        "faust": ("faust", 1),
        "batch2": ("batch", 2),
    }
    base = Settings(_env_file=None)
    db = claim_redis_db(base, "bench-features")  # no db a test run beside us could flush
    prefixes = {name: fresh_settings(tmp, name, db) for name in runs}
    settings = prefixes["batch"]
    r = redis.Redis(settings.redis.host, settings.redis.port, db=db)
    bars = make_bars(SYMBOLS, MINUTES, START_MS)
    per_bar = {}
    try:
        for name, (engine, workers) in runs.items():
            r.flushdb()
            log = tmp / f"{name}.log"
            per_bar[name] = stage_run(prefixes[name], bars, log, engine, workers)
        bare = bare_consume(settings, len(bars))
        noop = faust_noop(settings, len(bars))
        math_s = math_only(bars)
        feast_s = feast_only(settings, bars[: 4 * SYMBOLS], settings.kafka.consume_batch)
    finally:
        for s in prefixes.values():
            delete_prefixed_topics(s)
        r.flushdb()
        release_redis_db(base, db)
        r.flushdb()
    batch, faust, batch2 = per_bar["batch"], per_bar["faust"], per_bar["batch2"]
    share = settings.kafka.default_partitions // runs["batch2"][1]
    rows = [
        (
            "batch engine, one worker (consume, decode, features, Feast, produce, state, commit)",
            1 / batch,
            bare / batch,
        ),
        ("Faust engine, one worker (the same step in a Faust agent)", 1 / faust, bare / faust),
        (
            f"batch engine, two workers ({share} partitions each; bars sent once both are "
            "assigned)",
            1 / batch2,
            bare / batch2,
        ),
        ("bare confluent-kafka consume loop, same topic", 1 / bare, 1.0),
        ("Faust alone: an agent that only counts (take_events)", 1 / noop, bare / noop),
        ("feature math alone (SymbolState.update)", 1 / math_s, bare / math_s),
        ("Feast online write alone (batched pipeline)", 1 / feast_s, bare / feast_s),
    ]
    body = (
        f"{len(bars):,} bars ({SYMBOLS:,} symbols x {MINUTES} minutes) already in the topic, "
        f"{settings.kafka.default_partitions} partitions, steps of up to "
        f"{settings.features.step_bars} bars. The stage is timed from the worker's first step "
        "(its first vectors computed) to the last vector read back, over the bars after that "
        "step; the bare loop the same way, from its first batch in hand to its last message, "
        f"over the messages after that batch. The broker, Redis and this reader share the "
        f"{os.cpu_count()} cores with the workers. Goal: {GOAL_BARS_S:,} bars/s per worker.\n\n"
        + table(
            ["path", "bars/s", "ratio to bare consume"],
            [(name, round(rate), round(ratio, 3)) for name, rate, ratio in rows],
        )
        + f"\n\nOne worker: the batch engine {1 / batch:,.0f} bars/s "
        f"({met(1 / batch >= GOAL_BARS_S)}), the Faust engine {1 / faust:,.0f} bars/s "
        f"({met(1 / faust >= GOAL_BARS_S)}). Two batch workers ({share} partitions each) "
        f"together: {1 / batch2:,.0f} bars/s, {batch / batch2:.2f}x one worker. A backlog step "
        "holds several minutes of a partition's symbols, so each symbol's state and Feast row is "
        "written once for several bars; a live minute of 10,000 symbols arriving together has one "
        "bar per symbol per step (section 'Whole-market minute'). The no-op Faust agent reads "
        f"{1 / noop:,.0f} events/s. Where a batch step's time goes: docs/features.md."
    )
    goal = f">= {GOAL_BARS_S:,} bars/s per worker"
    verdicts = [
        Verdict(
            f"features: bars to Feast + features topic, one {engine} worker (backlog)",
            f"{1 / per_bar:,.0f} bars/s",
            f"{bare / per_bar:.3f}x a bare consume loop ({1 / bare:,.0f}/s)",
            goal,
            met(1 / per_bar >= GOAL_BARS_S),
        )
        for engine, per_bar in (("batch-engine", batch), ("Faust", faust))
    ]
    write_section("features", "Features stage", body, verdicts)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--faust-noop"]:
        faust_noop_agent(int(sys.argv[2]))
    else:
        main()
