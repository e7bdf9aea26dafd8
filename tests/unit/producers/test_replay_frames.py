"""The replay server's frames mode: a file of pre-encoded frames, served in order to each
subscriber after the Polygon handshake, then `replay_complete`; the real producer reads it.
Without frames, the server streams its market as before."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect

from producers.market_sim import simulate
from producers.parsing import ParsedFrame
from producers.polygon_ws import Producer, UpstreamRefused, handshake
from producers.publisher import Publisher
from producers.replay_feed import ReplayData, trade_events
from producers.replay_server import ReplayServer, read_frames, write_frames
from producers.upstream import REPLAY_COMPLETE, Upstream
from tickwatch.settings import Settings

SYMBOLS = ["AAPL", "VOO"]


def _frames(n: int, per_frame: int = 3) -> list[str]:
    return [
        json.dumps(
            [
                {
                    "ev": "T",
                    "sym": SYMBOLS[j % 2],
                    "p": 100.0 + i,
                    "s": 10,
                    "t": 1_750_000_000_000 + i * 1000 + j,
                    "i": f"{i}-{j}",
                }
                for j in range(per_frame)
            ]
        )
        for i in range(n)
    ]


def _settings(required_key: str | None = None) -> Settings:
    s = Settings(_env_file=None, symbols=SYMBOLS)
    replay = s.replay.model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "required_key": SecretStr(required_key) if required_key else None,
        }
    )
    return s.model_copy(update={"replay": replay})


@asynccontextmanager
async def _serving(settings: Settings, frames: list[bytes]) -> AsyncIterator[str]:
    """The server in frames mode on an ephemeral port; yields its WebSocket URL."""
    server = ReplayServer(settings, ReplayData([], []), frames=frames)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(server.serve(stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield f"ws://127.0.0.1:{server.port}/stocks"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _receive_all(url: str, key: str = "any") -> list[str]:
    """Handshake like the producer, then every frame up to `replay_complete` (excluded)."""
    got: list[str] = []
    async with connect(url) as ws:
        assert ws.response is not None  # permessage-deflate offered, declined: bytes as they are
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await handshake(ws, key, "T.*")
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(frame, str)  # text frames, like Polygon's
            statuses = [e.get("status") for e in json.loads(frame) if e.get("ev") == "status"]
            if REPLAY_COMPLETE in statuses:
                return got
            if statuses:  # the subscribe acknowledgement
                assert statuses == ["success"]
                continue
            got.append(frame)


def test_frames_file_round_trip(tmp_path: Path) -> None:
    frames = _frames(5)
    path = tmp_path / "frames.jsonl"
    write_frames(path, frames)
    assert read_frames(path) == [f.encode() for f in frames]
    with pytest.raises(ValueError, match="newline"):
        write_frames(tmp_path / "bad.jsonl", ['[{"ev": "T",\n"sym": "A"}]'])


def test_every_subscriber_gets_every_frame_in_order_then_replay_complete() -> None:
    frames = _frames(200)

    async def main() -> tuple[list[str], list[str]]:
        async with _serving(_settings(), [f.encode() for f in frames]) as url:
            first = await _receive_all(url)
            second = await _receive_all(url)  # a later client gets the whole file again
        return first, second

    first, second = asyncio.run(main())
    assert first == frames and second == frames


def test_no_frame_before_auth_and_subscribe_and_a_wrong_key_is_refused() -> None:
    async def main() -> tuple[list[dict], bool]:
        async with _serving(_settings(required_key="sekrit"), [b"[]"]) as url:
            async with connect(url) as ws:
                seen = [json.loads(await ws.recv())[0]]  # connected
                await ws.send(json.dumps({"action": "subscribe", "params": "T.*"}))
                seen.append(json.loads(await ws.recv())[0])  # not authorized
                await ws.send(json.dumps({"action": "auth", "params": "sekrit"}))
                seen.append(json.loads(await ws.recv())[0])  # auth_success, nothing streamed
            refused = False
            try:
                await _receive_all(url, key="wrong")
            except UpstreamRefused:
                refused = True
            assert await _receive_all(url, key="sekrit") == ["[]"]
        return seen, refused

    seen, refused = asyncio.run(main())
    assert [e["status"] for e in seen] == ["connected", "error", "auth_success"]
    assert refused


def test_the_producer_reads_the_whole_file_and_exits_at_its_end(
    offline_publisher: Callable[..., Publisher],
) -> None:
    frames = _frames(50, per_frame=4)
    settings = _settings()
    settings = settings.model_copy(
        update={"polygon": settings.polygon.model_copy(update={"channels": ["T"]})}
    )
    publisher = offline_publisher("test-frames", SYMBOLS)
    received: list[str | bytes] = []
    publish_frame = publisher.publish_frame

    def spy(frame: str | bytes, *args: Any, **kwargs: Any) -> ParsedFrame:
        received.append(frame)
        return publish_frame(frame, *args, **kwargs)

    publisher.publish_frame = spy

    async def main() -> None:
        async with _serving(settings, [f.encode() for f in frames]) as url:
            producer = Producer(settings, Upstream(url, "http://unused", "k", "replay"), publisher)
            await asyncio.wait_for(producer.run(exit_at_end=True), 30)

    asyncio.run(main())
    trades = [f for f in received if '"ev": "T"' in str(f)]
    assert trades == frames  # in order, each once
    assert publisher._trades_queued == 200 and len(publisher.trade_producer) == 200
    assert len(publisher.producer) == 0  # no dead letter


def test_without_frames_the_market_is_streamed_as_before() -> None:
    """The normal mode, untouched: each minute's trades, the previous minute's AM bars, then
    replay_complete, over deflate as negotiated."""
    sim = simulate(["AAPL"], days=1, seed=3)
    live = sim.bars[:3]
    settings = _settings()
    settings = settings.model_copy(
        update={"replay": settings.replay.model_copy(update={"speed": 0.0})}
    )

    async def main() -> tuple[list[dict], str | None]:
        server = ReplayServer(settings, ReplayData([], live))
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(server.serve(stop, ready))
        await asyncio.wait_for(ready.wait(), 10)
        events: list[dict] = []
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/stocks") as ws:
                assert ws.response is not None
                deflate = ws.response.headers.get("Sec-WebSocket-Extensions")
                await handshake(ws, "any", "AM.AAPL,T.AAPL")
                while not any(e.get("status") == REPLAY_COMPLETE for e in events):
                    events += json.loads(await asyncio.wait_for(ws.recv(), 10))
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        return events, deflate

    events, deflate = asyncio.run(main())
    assert deflate is not None and "permessage-deflate" in deflate
    trades = [e for e in events if e["ev"] == "T"]
    assert len(trades) == sum(len(trade_events(b)) for b in live)
    assert [e["s"] for e in events if e["ev"] == "AM"] == [b.start_ms for b in live]
