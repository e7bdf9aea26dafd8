"""Producer integration helpers: a replay server in a background thread, reading topics whole."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Message, TopicPartition

from producers.replay_feed import ReplayData
from producers.replay_server import ReplayServer
from tickwatch.kafka import make_consumer
from tickwatch.settings import Settings
from tickwatch.topics import TopicSpec, topic_name


def replay_settings(settings: Settings, **replay: object) -> Settings:
    """`settings` with a replay block (port 0 = any free port) and no metrics servers."""
    return settings.model_copy(
        update={
            "replay": settings.replay.model_copy(update={"port": 0, **replay}),
            "prometheus": settings.prometheus.model_copy(
                update={"producer_metrics_port": 0, "replay_metrics_port": 0}
            ),
        }
    )


@contextmanager
def running_replay(
    settings: Settings, data: ReplayData, **kwargs: object
) -> Iterator[tuple[ReplayServer, Settings]]:
    """Serve `data` from a thread; yields the server and settings pointing at its real port."""
    ready = threading.Event()
    holder: dict = {}

    def serve() -> None:
        async def main() -> None:
            holder["stop"] = asyncio.Event()
            holder["loop"] = asyncio.get_running_loop()
            server = ReplayServer(settings, data, **kwargs)
            holder["server"] = server
            started = asyncio.Event()
            task = asyncio.create_task(server.serve(holder["stop"], started))
            await started.wait()
            ready.set()
            await task

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30), "replay server did not start"
    server: ReplayServer = holder["server"]
    port = int(server.base_url.rsplit(":", 1)[1])
    bound = settings.model_copy(
        update={"replay": settings.replay.model_copy(update={"port": port})}
    )
    try:
        yield server, bound
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


def read_topic(settings: Settings, spec: TopicSpec, timeout_s: float = 30.0) -> list[Message]:
    """Every message currently in the topic (up to the high watermarks), in partition order."""
    name = topic_name(spec, settings)
    consumer = make_consumer(settings, f"test-{uuid.uuid4().hex[:8]}")
    meta = consumer.list_topics(name, timeout=10).topics[name]
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
        for p in meta.partitions
    }
    consumer.assign([TopicPartition(name, p, 0) for p in ends])
    want, out = sum(ends.values()), []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        for m in consumer.consume(1000, 1.0):
            if m.error() is None:
                out.append(m)
    consumer.close()
    assert len(out) == want, f"read {len(out)} of {want} messages from {name}"
    return out
