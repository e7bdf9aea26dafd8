"""The feed at market peaks: WebSocket frames over a real socket to acknowledged Kafka records.

The server is `tickwatch replay-server --frames FILE` in its own process: after the Polygon
handshake (connected, auth, subscribe) it sends a file of pre-encoded `T` frames back to back, as
fast as the socket takes them, uncompressed (it declines permessage-deflate), then
`replay_complete`. The stage is the producer's real path in
this process: `polygon_ws.Producer` (connect, handshake, read loop) with `publisher.Publisher`
(parse, validate, dead-letter routing, keyed produce with event time and ingest header, delivery
accounting), what `tickwatch produce --exit-at-end` runs, timed from the first trade frame
received to the last trade acknowledged by Kafka (the final flush). Every trade not acknowledged,
failed, or duplicated by a reconnect is an error.

Two measurements beside it, each in every round:
- the server alone: a bare WebSocket client (same library, same socket, same frames) that only
  receives and counts them, first trade frame to last; it must be well above the stage, so the
  server is not what limits the stage;
- a bare confluent-kafka producer (`tickwatch.kafka.producer_config`, the same settings) sending
  the very same events' payloads with the same keys and timestamps, first send to last ack.

Kafka is a private broker (`ops.drill_stack.PrivateStack`, ports from PORT_BASE): the shared stack
is never touched. Best of ROUNDS rounds for each of the three. The baseline's payloads, which a
real producer process does not hold, are frozen out of the garbage collector's scans.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from benchmarks.bench_ingest import EVENTS_PER_FRAME, make_frames, run_bare
from ops.drill_stack import PrivateStack, private_settings
from ops.results import Verdict, met, table, write_section
from ops.stack.processes import ManagedProcess, child_env, port_open, wait_until
from producers.parsing import ParsedFrame, parse_frame
from producers.polygon_ws import Producer, handshake, subscription
from producers.publisher import Publisher
from producers.replay_server import write_frames
from producers.upstream import REPLAY_COMPLETE, upstream_for
from tickwatch.kafka import DeliveryFailed, ensure_topics
from tickwatch.settings import Settings

TRADES_TOTAL = int(os.environ.get("BENCH_FEED_TRADES", 600_000))
ROUNDS = int(os.environ.get("BENCH_FEED_ROUNDS", 5))  # best of: the machine is shared
PORT_BASE = 19_290  # broker 19292, controller 19293, Redis 19294, replay 19295
GOAL_RATE = 100_000  # trade events/s
GOAL_RATIO = 0.5  # of the bare producer
SERVER_HEADROOM = 2.0  # the server alone must be this much faster than the stage


@dataclass
class Round:
    """One round's three timings (seconds) and the stage's errors."""

    server_s: float
    bare_s: float
    stage_s: float
    stage_errors: int
    server_frames: int


def feed_settings(work: Path) -> Settings:
    """Private ports and run folder; the producer subscribes to trades only."""
    base = Settings(_env_file=None)
    s = private_settings(base, work / "stack", work / "models", 0.0, port_base=PORT_BASE)
    return s.model_copy(
        update={
            "topic_prefix": "feed-",
            "replay": s.replay.model_copy(update={"fault_hooks": False}),
            "polygon": s.polygon.model_copy(update={"channels": ["T"]}),
        }
    )


def _is_status(frame: str | bytes) -> bool:
    """A status frame (short, from the server itself), not one of the file's trade frames."""
    if len(frame) >= 512:
        return False
    return '"status"' in frame if isinstance(frame, str) else b'"status"' in frame


async def _server_alone(settings: Settings) -> tuple[float, int]:
    """Seconds from the first trade frame to the last, for a client that only counts them."""
    upstream = upstream_for(settings)
    frames, first, last = 0, 0.0, 0.0
    async with connect(upstream.ws_url, max_size=settings.polygon.max_frame_bytes) as ws:
        await handshake(ws, upstream.api_key, subscription(settings))
        while True:
            frame = await ws.recv()
            if _is_status(frame):
                if REPLAY_COMPLETE in str(frame):
                    break
                continue
            last = time.perf_counter()
            if not frames:
                first = last
            frames += 1
    return last - first, frames


def run_server_alone(settings: Settings) -> tuple[float, int]:
    return asyncio.run(_server_alone(settings))


def run_stage(settings: Settings) -> tuple[float, int]:
    """Seconds from the first trade frame received to the last trade acknowledged, through
    `Producer` + `Publisher` (what `tickwatch produce --exit-at-end` runs), and its errors."""
    publisher = Publisher(settings, stage="bench-feed")
    producer = Producer(settings, upstream_for(settings), publisher)
    first: list[float] = []
    publish_frame = publisher.publish_frame

    def timed(frame: str | bytes, *args: Any, **kwargs: Any) -> ParsedFrame:
        if not first and not _is_status(frame):
            first.append(time.perf_counter())
        return publish_frame(frame, *args, **kwargs)

    publisher.publish_frame = timed  # type: ignore[method-assign]
    failed = False
    try:
        asyncio.run(producer.run(exit_at_end=True))
        publisher.flush()
    except DeliveryFailed:
        failed = True
    end = time.perf_counter()
    acked = publisher.acked["T"]
    errors = abs(TRADES_TOTAL - acked) + publisher.delivery_errors + producer.reconnects
    if failed or not first:
        errors = max(errors, 1)
    return end - (first[0] if first else end), errors


def start_server(settings: Settings, frames_file: Path) -> ManagedProcess:
    """`tickwatch replay-server --frames FILE` in its own process, once its port is open."""
    proc = ManagedProcess("bench-feed-replay", settings.run_dir)
    argv = [sys.executable, "-m", "tickwatch", "replay-server", "--frames", str(frames_file)]
    proc.start(argv, env=child_env(settings, "INFO"))
    port = settings.replay.port
    if not wait_until(lambda: port_open("127.0.0.1", port) or proc.pid() is None, 120):
        raise RuntimeError(f"the replay server did not open port {port}; see {proc.log_file}")
    if proc.pid() is None:
        raise RuntimeError(f"the replay server exited at start; see {proc.log_file}")
    return proc


def measure(work: Path) -> list[Round]:
    """Private broker up, frames file written, server started; ROUNDS rounds; all stopped."""
    settings = feed_settings(work)
    frames = make_frames(TRADES_TOTAL)
    payloads = [
        (e.symbol, e.timestamp_ms, e.payload) for f in frames for e in parse_frame(f).events
    ]
    assert len(payloads) == TRADES_TOTAL
    frames_file = work / "frames.jsonl"
    write_frames(frames_file, frames)
    del frames
    # the bare baseline's payloads live in this process, which `tickwatch produce` does
    # not hold: out of the collector's sight, so its full collections do not scan them during
    # the stage (they took a tenth of the stage's time)
    gc.collect()
    gc.freeze()
    stack = PrivateStack(settings)
    server: ManagedProcess | None = None
    rounds: list[Round] = []
    try:
        stack.start()
        ensure_topics(settings)
        server = start_server(settings, frames_file)
        for i in range(ROUNDS):
            server_s, server_frames = run_server_alone(settings)
            bare_s = run_bare(settings, payloads, warm=True)  # the stage's producer connects first
            stage_s, errors = run_stage(settings)
            rounds.append(Round(server_s, bare_s, stage_s, errors, server_frames))
            print(
                f"round {i + 1}: server alone {TRADES_TOTAL / server_s:,.0f}/s, "
                f"bare {TRADES_TOTAL / bare_s:,.0f}/s, stage {TRADES_TOTAL / stage_s:,.0f}/s, "
                f"{errors} errors",
                flush=True,
            )
    finally:
        if server is not None:
            server.stop(timeout_s=15)
        stack.stop()
    return rounds


def main() -> None:
    """Measure, print and record the feed section of RESULTS.md."""
    work = Path(tempfile.mkdtemp(prefix="tickwatch-bench-feed-"))
    try:
        rounds = measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_frames = -(-TRADES_TOTAL // EVENTS_PER_FRAME)
    stage_rate = TRADES_TOTAL / min(r.stage_s for r in rounds)
    bare_rate = TRADES_TOTAL / min(r.bare_s for r in rounds)
    server_rate = TRADES_TOTAL / min(r.server_s for r in rounds)
    errors = sum(r.stage_errors for r in rounds)
    short = sum(abs(r.server_frames - n_frames) for r in rounds)  # frames the bare client missed
    ratio = stage_rate / bare_rate
    headroom = server_rate / stage_rate
    server_ok = headroom >= SERVER_HEADROOM and short == 0
    ok = stage_rate >= GOAL_RATE and ratio >= GOAL_RATIO and errors == 0 and server_ok
    verdict = met(ok)
    goal = (
        f">= {GOAL_RATE:,} trade events/s and >= {GOAL_RATIO}x bare, no error, the server alone "
        f">= {SERVER_HEADROOM:g}x the stage"
    )
    rows = [
        (
            "producer: WebSocket frame -> acked (Producer + Publisher)",
            round(stage_rate),
            f"{ratio:.2f}x",
            errors,
        ),
        ("bare confluent-kafka, same payloads and keys", round(bare_rate), "1.00x", 0),
        (
            "server alone: a bare WebSocket client counting the frames",
            round(server_rate),
            f"{server_rate / bare_rate:.2f}x",
            short,
        ),
    ]
    body = (
        f"{TRADES_TOTAL:,} Polygon trade events in {n_frames:,} frames of {EVENTS_PER_FRAME}, "
        "pre-encoded and sent back to back by `tickwatch replay-server --frames` in its own "
        "process over a loopback WebSocket (uncompressed: the server declines permessage-deflate)"
        "; the producer path (`polygon_ws.Producer` + "
        "`Publisher`, as `tickwatch produce --exit-at-end`) in the bench process, timed from the "
        "first trade frame received to the last trade acknowledged; the bare producer from the "
        "first send to the last ack; the server alone from the first trade frame to the last. "
        f"Best of {ROUNDS} rounds each; idempotent acks=all producer "
        "(`tickwatch.kafka.producer_config`), private single-node broker on this machine.\n\n"
        + table(["path", "trade events/s", "vs bare", "errors"], rows)
        + "\n\nEach round, stage / bare: "
        + ", ".join(f"{r.bare_s / r.stage_s:.2f}x" for r in rounds)
        + "; server alone / stage: "
        + ", ".join(f"{r.stage_s / r.server_s:.1f}x" for r in rounds)
        + "."
        + f"\n\nGoal: {goal}. Measured: {stage_rate:,.0f} events/s, {ratio:.2f}x bare, "
        f"{errors} errors over {ROUNDS * TRADES_TOTAL:,} trades; the server alone "
        f"{server_rate:,.0f} events/s, {headroom:.1f}x the stage"
        f"{'' if short == 0 else f', {short} frames missing'}: {verdict}."
    )
    summary = Verdict(
        "feed at market peaks: WebSocket frames to acked Kafka records",
        f"{stage_rate:,.0f} trade events/s, {errors} errors; server alone "
        f"{server_rate:,.0f}/s ({headroom:.1f}x)",
        f"{ratio:.2f}x a bare confluent-kafka producer ({bare_rate:,.0f}/s)",
        goal,
        verdict,
    )
    write_section("feed", "Feed at market peaks: WebSocket to Kafka", body, [summary])


if __name__ == "__main__":
    main()
