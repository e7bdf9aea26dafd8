"""API integration test helpers: events, producing, draining the sink, in-process servers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import uvicorn

from api.main import create_app
from api.sink import AnomalySink
from tickwatch.kafka import (
    INGEST_HEADER,
    consume_batch,
    flush_or_raise,
    make_consumer,
    make_producer,
    produce,
)
from tickwatch.schemas import AnomalyEvent, ModelScore, Reason, encode, make_event_id
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, topic_name

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000


def make_event(
    symbol: str = "AAPL",
    minute: int = 0,
    severity: str = "high",
    model: str = "iforest",
    version: str = "1",
) -> AnomalyEvent:
    """A valid AnomalyEvent for bar `BASE_MS + minute` flagged by `model`."""
    bar = BASE_MS + minute * MINUTE
    other = "lstm_ae" if model == "iforest" else "iforest"
    return AnomalyEvent(
        event_id=make_event_id(symbol, bar, f"{model}:{version}"),
        symbol=symbol,
        bar_start_ms=bar,
        detected_at_ms=bar + MINUTE + 500,
        severity=severity,
        close=100.0 + minute,
        scores=[
            ModelScore(model=model, version=version, score=0.9, threshold=0.6, flagged=True),
            ModelScore(model=other, version="3", score=0.1, threshold=0.5, flagged=False),
        ],
        reasons=[Reason(feature="ret_z", value=9.5, contribution=0.4, model=model)],
        rules=["return_zscore"],
    )


def produce_raw(settings: Settings, values: list[bytes], ingest_ms: int | None = None) -> None:
    """Produce raw values to the anomalies topic and wait for the acknowledgements."""
    producer = make_producer(settings)
    headers = [(INGEST_HEADER, str(ingest_ms).encode())] if ingest_ms else None
    for v in values:
        produce(producer, topic_name(ANOMALIES, settings), v, key=None, headers=headers)
    flush_or_raise(producer)


def produce_events(settings: Settings, events: list[AnomalyEvent]) -> None:
    """Produce events to the anomalies topic with an ingest header."""
    produce_raw(settings, [encode(e) for e in events], ingest_ms=int(time.time() * 1000))


def drain(
    settings: Settings, expected: int, group: str | None = None, timeout_s: float = 60
) -> int:
    """Run a sink (in consumer group `group` if given) until `expected` records were read."""
    consumer = make_consumer(settings, f"{settings.topic_prefix}{group}") if group else None
    sink = AnomalySink(settings, consumer=consumer)
    sink.consumer.subscribe([sink.topic])
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            msgs = consume_batch(sink.consumer, 500, 0.5)
            if msgs:
                sink.process(msgs)
                seen += len(msgs)
    finally:
        sink.consumer.close()
    return seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def api_server(settings: Settings) -> Iterator[str]:
    """Serve create_app(settings) with uvicorn in a thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "API server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class RedisServer:
    """A private redis-server on its own port (never the shared one), stoppable and restartable."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis("127.0.0.1", self.port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
