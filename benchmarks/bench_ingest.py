"""Ingest throughput: Polygon trade frames -> acknowledged Kafka messages, beside a bare producer.

The stage is the producer's real path (`Publisher.publish_frame`: parse, validate, dead-letter
routing, keyed produce with event time and ingest header, delivery accounting). The baseline is a
bare confluent-kafka producer (same settings) sending the very payloads the stage produced, with
the same key and timestamp. Both run against the local broker into fresh topics, in this process.
"""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Producer

from benchmarks.common import Timer
from ops.results import Verdict, met, table, write_section
from producers.market_sim import simulate, trades_for
from producers.parsing import parse_frame
from producers.publisher import Publisher
from tickwatch.kafka import (
    delete_prefixed_topics,
    ensure_topics,
    flush_or_raise,
    producer_config,
)
from tickwatch.settings import Settings
from tickwatch.topics import TRADES, topic_name

TRADES_TOTAL = 300_000
EVENTS_PER_FRAME = 500
ROUNDS = 3
GOAL_RATE = 100_000  # trade events/s
GOAL_RATIO = 0.5  # of the bare producer


def make_frames(total: int = TRADES_TOTAL) -> list[str]:
    """`total` Polygon `T` events from the simulated market, in frames of EVENTS_PER_FRAME."""
    sim = simulate(["AAPL", "GOOGL", "MSFT", "TSLA", "VOO"], days=1, seed=1, inject=False)
    events = []
    for bar in sim.bars:
        for t in trades_for(bar):
            events.append(
                {
                    "ev": "T",
                    "sym": t.symbol,
                    "i": t.trade_id,
                    "x": t.exchange,
                    "p": t.price,
                    "s": t.size,
                    "c": [12, 37],
                    "t": t.timestamp_ms,
                    "q": t.sequence,
                    "z": t.tape,
                }
            )
        if len(events) >= total:
            break
    while len(events) < total:
        events += events[: total - len(events)]
    return [json.dumps(events[i : i + EVENTS_PER_FRAME]) for i in range(0, total, EVENTS_PER_FRAME)]


def run_stage(settings: Settings, frames: list[str]) -> tuple[float, int]:
    """Seconds for frames -> every trade acknowledged, through the producer's Publisher, and
    the trades not acknowledged (failed deliveries or missing)."""
    publisher = Publisher(settings, stage="bench")
    with Timer() as t:
        for frame in frames:
            publisher.publish_frame(frame, int(time.time() * 1000))
        publisher.flush()
    return t.seconds, TRADES_TOTAL - publisher.acked["T"] + publisher.delivery_errors


def run_bare(
    settings: Settings, payloads: list[tuple[str, int, bytes]], warm: bool = False
) -> float:
    """Seconds for a bare producer to send the same payloads and get them acknowledged. `warm`:
    one record is sent and acknowledged before the clock starts (its connection and idempotent
    producer id not timed, for a stage whose producer gets them before its clock starts)."""
    producer = Producer(producer_config(settings))
    topic = topic_name(TRADES, settings)
    if warm:
        key, ts, value = payloads[0]
        producer.produce(topic, value, key, timestamp=ts)
        flush_or_raise(producer)
    with Timer() as t:
        for key, ts, value in payloads:
            while True:
                try:
                    producer.produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.05)
        flush_or_raise(producer)
    return t.seconds


def main() -> None:
    """Measure, print and record the ingest section of RESULTS.md."""
    settings = Settings(_env_file=None, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}-")
    ensure_topics(settings)
    try:
        frames = make_frames()
        with Timer() as parse_t:
            payloads = [
                (e.symbol, e.timestamp_ms, e.payload) for f in frames for e in parse_frame(f).events
            ]
        assert len(payloads) == TRADES_TOTAL
        stage, bare, errors = [], [], 0
        for _ in range(ROUNDS):
            bare.append(run_bare(settings, payloads))
            seconds, lost = run_stage(settings, frames)
            stage.append(seconds)
            errors += lost
    finally:
        delete_prefixed_topics(settings)
    stage_rate, bare_rate = TRADES_TOTAL / min(stage), TRADES_TOTAL / min(bare)
    parse_rate = TRADES_TOTAL / parse_t.seconds
    ratio = stage_rate / bare_rate
    goal = f">= {GOAL_RATE:,} events/s and >= {GOAL_RATIO}x bare, no trade lost"
    verdict = met(stage_rate >= GOAL_RATE and ratio >= GOAL_RATIO and errors == 0)
    rows = [
        (
            "producer: frames -> acked (Publisher)",
            round(stage_rate),
            f"{stage_rate / bare_rate:.2f}x",
        ),
        ("bare confluent-kafka, same payloads", round(bare_rate), "1.00x"),
        ("parse + validate only (no Kafka)", round(parse_rate), f"{parse_rate / bare_rate:.2f}x"),
    ]
    body = (
        f"{TRADES_TOTAL:,} Polygon trade events in frames of {EVENTS_PER_FRAME}, one process, "
        f"best of {ROUNDS} rounds; idempotent acks=all lz4 producer, local broker.\n\n"
        + table(["path", "trade events/s", "vs bare"], rows)
        + f"\n\nGoal: {goal}. Measured: {stage_rate:,.0f} events/s, {ratio:.2f}x bare, "
        f"{errors} of {ROUNDS * TRADES_TOTAL:,} trades not acknowledged: {verdict}."
    )
    summary = Verdict(
        "ingest: Polygon frames to acknowledged Kafka messages (in memory, no socket)",
        f"{stage_rate:,.0f} trade events/s, {errors} not acknowledged",
        f"{ratio:.2f}x a bare confluent-kafka producer ({bare_rate:,.0f}/s)",
        goal,
        verdict,
    )
    write_section(
        "ingest", "Ingest: Polygon frames to acknowledged Kafka messages", body, [summary]
    )


if __name__ == "__main__":
    main()
