"""A Polygon-protocol server (WebSocket stream + REST aggregates on one port) replaying a market.

The market clock starts when the first client subscribes and is shared by every client, like a
real feed: a client that is away misses what was streamed meanwhile and must backfill it by REST.
`speed` is simulated minutes per real minute (1 = real time); 0 streams as fast as clients read.

With a frames file (`tickwatch replay-server --frames PATH`) it serves pre-encoded frames instead
of a market: every client that subscribes gets the whole file, frame after frame as fast as its
socket takes them, then the `replay_complete` status. That is the feed at its peak for the
benchmark of the producer over a real socket (`benchmarks/bench_feed.py`).

With `replay.market_symbols` set it streams a synthetic whole market instead (`WholeMarket`):
every symbol's `AM` bar of a minute together, a minute every 60 / speed seconds, no trades; the
whole-market end-to-end benchmark's feed (`benchmarks/bench_market_e2e.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from producers.hostile_frames import hostile_frames
from producers.market_sim import WholeMarket, recent_start_day
from producers.replay_feed import (
    AggregateState,
    ReplayData,
    load_resumed,
    minute_slots,
    quote_event,
    resume_note,
    trade_events,
)
from producers.replay_rest import AggregatesIndex, dumps
from producers.upstream import REPLAY_COMPLETE
from tickwatch import bar_store
from tickwatch.kafka import flush_or_raise, make_producer, produce
from tickwatch.metrics import EVENTS_OUT, serve_metrics
from tickwatch.schemas import encode
from tickwatch.settings import Settings
from tickwatch.topic_check import require_topics
from tickwatch.topics import BARS, LABELS, topic_name

log = logging.getLogger(__name__)
MAX_EVENTS_PER_FRAME = 1000


@dataclass(eq=False)
class Client:
    """One WebSocket client: its subscriptions (`EV.SYM`, `EV.*`) and frames sent so far."""

    ws: ServerConnection
    authed: bool = False
    subs: set[str] = field(default_factory=set)
    frames_sent: int = 0
    streaming: bool = False  # frames mode: its stream has started

    def wants(self, ev: str, sym: str) -> bool:
        return f"{ev}.{sym}" in self.subs or f"{ev}.*" in self.subs


def _status(status: str, message: str) -> str:
    return json.dumps([{"ev": "status", "status": status, "message": message}])


def read_frames(path: Path) -> list[bytes]:
    """Pre-encoded frames: one JSON array per line (UTF-8), blank lines skipped."""
    with open(path, "rb") as f:
        return [line for raw in f if (line := raw.strip())]


def write_frames(path: Path, frames: Sequence[str | bytes]) -> None:
    """Write frames for `read_frames` (each a JSON array without a newline of its own)."""
    with open(path, "wb") as f:
        for frame in frames:
            data = frame.encode() if isinstance(frame, str) else frame
            if b"\n" in data:
                raise ValueError("a frame of a frames file must hold no newline")
            f.write(data + b"\n")


class ReplayServer:
    """Serves `data` over the Polygon protocol; `drop_after_frames` aborts one connection once.

    With `frames`, it serves those pre-encoded frames to each subscribed client instead of the
    market clock (`data` then only answers REST); with `market`, that whole market's minutes."""

    def __init__(
        self,
        settings: Settings,
        data: ReplayData,
        *,
        drop_after_frames: int | None = None,
        rest_fail_first: int = 0,
        frames: Sequence[bytes] | None = None,
        market: WholeMarket | None = None,
    ) -> None:
        self.settings = settings
        self.market = market
        self.data = data
        self.speed = settings.replay.speed
        self.required_key = settings.replay.required_key
        self.drop_after_frames = drop_after_frames
        self.rest_fail_first = rest_fail_first
        self.index = AggregatesIndex(data.history + data.streamed + data.live)
        self.index.visible_until = max((b.start_ms for b in data.history), default=-1)
        self.clients: set[Client] = set()
        self.subscribed = asyncio.Event()
        self.finished = asyncio.Event()
        self.frames = frames
        self._streams: set[asyncio.Task[None]] = set()
        self.port = settings.replay.port  # the bound one once serving (replay.port 0: any)
        self.base_url = f"http://{settings.replay.host}:{settings.replay.port}"

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run until `stop` is set."""
        async with serve(
            self._handle,
            self.settings.replay.host,
            self.settings.replay.port,
            process_request=self._process_request,
            max_size=2**20,
            # frames mode sends the file's bytes as they are: deflating them (permessage-deflate,
            # which clients offer and servers may decline) makes this process ~10x slower, CPU
            # a benchmark's producer on the same machine would lose
            compression=None if self.frames is not None else "deflate",
        ) as server:
            port = list(server.sockets)[0].getsockname()[1]
            self.base_url = f"http://{self.settings.replay.host}:{port}"
            self.port = port
            if self.frames is None:
                log.info(
                    "replay server on ws://%s:%d (REST on the same port), %d live bars",
                    self.settings.replay.host,
                    port,
                    len(self.data.live),
                )
                ticks = self._clock() if self.market is None else self._market_clock(self.market)
                clock: asyncio.Task[None] | None = asyncio.create_task(ticks)
            else:
                log.info(
                    "replay server on ws://%s:%d: %d pre-encoded frames to each subscriber",
                    self.settings.replay.host,
                    port,
                    len(self.frames),
                )
                clock = None
            if ready:
                ready.set()
            await stop.wait()
            if clock is not None:
                clock.cancel()
            for task in list(self._streams):
                task.cancel()

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Plain HTTP requests get REST answers; WebSocket upgrades go on to the stream."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        if request.path.startswith("/admin/drop"):
            dropped = self.drop_all()
            return self._json(conn, 200, {"status": "OK", "dropped": dropped})
        if request.path.startswith("/admin/garbage"):
            return self._garbage(conn, request.path)
        if self.rest_fail_first > 0:
            self.rest_fail_first -= 1
            resp = self._json(conn, 429, {"status": "ERROR", "error": "rate limit (simulated)"})
            resp.headers["Retry-After"] = "0.2"
            return resp
        key = _request_key(request)
        if self.required_key and key != self.required_key.get_secret_value():
            return self._json(conn, 401, {"status": "ERROR", "error": "Unknown API Key"})
        host = request.headers.get("Host")  # next_url must use the address the client used
        status, body = self.index.handle(request.path, f"http://{host}" if host else self.base_url)
        return self._json(conn, status, body)

    @staticmethod
    def _json(conn: ServerConnection, status: int, body: dict) -> Response:
        resp = conn.respond(HTTPStatus(status), dumps(body))
        del resp.headers["Content-Type"]
        resp.headers["Content-Type"] = "application/json"
        return resp

    def drop_all(self) -> int:
        """Abort every WebSocket connection (a network failure, for fault tests)."""
        for c in list(self.clients):
            c.ws.transport.abort()
        return len(self.clients)

    def _garbage(self, conn: ServerConnection, path: str) -> Response:
        """`/admin/garbage?n=N`: broadcast N rounds of hostile frames (needs replay.fault_hooks)."""
        if not self.settings.replay.fault_hooks:
            return self._json(
                conn, 404, {"status": "ERROR", "error": "fault hooks are off (replay.fault_hooks)"}
            )
        query = dict(p.partition("=")[::2] for p in path.partition("?")[2].split("&") if p)
        try:
            rounds = max(0, min(int(query.get("n", "1")), 10_000))
        except ValueError:
            return self._json(conn, 400, {"status": "ERROR", "error": "n must be an integer"})
        frames = [text for _, text in hostile_frames()] * rounds
        clients = list(self.clients)
        asyncio.get_running_loop().create_task(self._send_garbage(clients, frames))
        log.warning("fault injection: %d hostile frames to %d clients", len(frames), len(clients))
        return self._json(
            conn, 200, {"status": "OK", "frames": len(frames), "clients": len(clients)}
        )

    async def _send_garbage(self, clients: list[Client], frames: list[str | bytes]) -> None:
        for text in frames:
            await asyncio.gather(*(self._send(c, text) for c in clients))

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws)
        await ws.send(_status("connected", "Connected Successfully"))
        try:
            async for message in ws:
                if not await self._on_message(client, message):
                    return
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)

    async def _on_message(self, client: Client, message: str | bytes) -> bool:
        """Handle one client action; False ends the connection."""
        try:
            req = json.loads(message)
            action, params = req["action"], str(req.get("params", ""))
        except (ValueError, KeyError, TypeError):
            await client.ws.send(_status("error", "invalid message; expected {action, params}"))
            return True
        if action == "auth":
            if self.required_key and params != self.required_key.get_secret_value():
                await client.ws.send(_status("auth_failed", "authentication failed"))
                await client.ws.close(1008, "authentication failed")
                return False
            client.authed = True
            await client.ws.send(_status("auth_success", "authenticated"))
        elif not client.authed:
            await client.ws.send(_status("error", "not authorized; send auth first"))
        elif action in ("subscribe", "unsubscribe"):
            channels = [c.strip() for c in params.split(",") if c.strip()]
            if action == "subscribe":
                client.subs.update(channels)
                self.clients.add(client)
                self.subscribed.set()
            else:
                client.subs.difference_update(channels)
            verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
            await client.ws.send(
                json.dumps(
                    [
                        {"ev": "status", "status": "success", "message": f"{verb}: {c}"}
                        for c in channels
                    ]
                )
            )
            if action == "subscribe" and self.frames is not None:
                if not client.streaming:
                    client.streaming = True
                    task = asyncio.create_task(self._stream_frames(client, self.frames))
                    self._streams.add(task)
                    task.add_done_callback(self._streams.discard)
            elif action == "subscribe" and self.finished.is_set():  # joined after the end
                await client.ws.send(_status(REPLAY_COMPLETE, "end of the replayed market data"))
        else:
            await client.ws.send(_status("error", f"unknown action {action!r}"))
        return True

    async def _stream_frames(self, client: Client, frames: Sequence[bytes]) -> None:
        """Every frame, back to back as fast as the socket takes them, then `replay_complete`.

        Frames go out as they are (text frames, never re-encoded or compressed); one send at a
        time, so the socket's flow control paces the stream. Subscriptions do not filter them."""
        send = client.ws.send
        t0 = time.perf_counter()
        try:
            for frame in frames:
                await send(frame, text=True)
            client.frames_sent += len(frames)
            await send(_status(REPLAY_COMPLETE, "end of the pre-encoded frames"))
        except ConnectionClosed:
            log.info("client left after %s frames", client.frames_sent)
            return
        finally:
            self.clients.discard(client)
        log.info("%d frames sent in %.3f s", len(frames), time.perf_counter() - t0)

    async def _clock(self) -> None:
        """Stream live minutes: each tick sends the last minute's AM bars and this one's trades."""
        await self.subscribed.wait()
        slots = minute_slots(self.data.live)
        state = AggregateState()
        t0 = time.monotonic()
        seconds_per_minute = 60.0 / self.speed if self.speed > 0 else 0.0
        chunks = max(1, min(60, int(seconds_per_minute)))
        previous: list = []
        for k, slot in enumerate(slots + [[]]):
            trades = [t for bar in slot for t in trade_events(bar)]
            trades.sort(key=lambda t: t["t"])
            bars = [state.am_event(b) for b in previous]
            for j in range(chunks):
                if seconds_per_minute:
                    due = t0 + (k + j / chunks) * seconds_per_minute
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                elif not self.clients:  # as fast as clients read: pause while nobody reads
                    self.subscribed.clear()
                    await self.subscribed.wait()
                if j == 0 and previous:  # REST serves a bar from the moment it is streamed
                    self.index.visible_until = previous[0].start_ms
                part = trades[len(trades) * j // chunks : len(trades) * (j + 1) // chunks]
                await self._broadcast((bars if j == 0 else []) + part)
            previous = slot
        await self._broadcast_text(_status(REPLAY_COMPLETE, "end of the replayed market data"))
        self.finished.set()
        log.info("replay complete: %d minutes streamed", len(slots))

    async def _market_clock(self, market: WholeMarket) -> None:
        """Stream the whole market: every symbol's AM bar of a minute at once, a minute every
        60 / speed seconds (back to back at speed 0), each prepared while the previous waits."""
        await self.subscribed.wait()
        state = AggregateState()
        spacing = 60.0 / self.speed if self.speed > 0 else 0.0
        t0 = time.monotonic()
        for k in range(market.minutes):
            events = [state.am_event(b) for b in market.next_minute()]
            await asyncio.sleep(max(0.0, t0 + k * spacing - time.monotonic()))
            await self._broadcast(events)
        await self._broadcast_text(_status(REPLAY_COMPLETE, "end of the synthetic market"))
        self.finished.set()
        log.info("replay complete: %d minutes of %d symbols", market.minutes, len(market.symbols))

    async def _broadcast(self, events: list[dict]) -> None:
        if not events:
            return
        if any("Q." in s for c in self.clients for s in c.subs):
            events = events + [quote_event(e) for e in events if e["ev"] == "T"]
        await asyncio.gather(*(self._send_events(c, events) for c in list(self.clients)))

    async def _send_events(self, client: Client, events: list[dict]) -> None:
        mine = [e for e in events if client.wants(e["ev"], e["sym"])]
        for i in range(0, len(mine), MAX_EVENTS_PER_FRAME):
            await self._send(client, json.dumps(mine[i : i + MAX_EVENTS_PER_FRAME]))
            for e in mine[i : i + MAX_EVENTS_PER_FRAME]:
                EVENTS_OUT.labels("replay", e["ev"]).inc()

    async def _broadcast_text(self, text: str) -> None:
        await asyncio.gather(*(self._send(c, text) for c in list(self.clients)))

    async def _send(self, client: Client, text: str | bytes) -> None:
        try:
            await client.ws.send(text)
        except ConnectionClosed:
            self.clients.discard(client)
            return
        client.frames_sent += 1
        if self.drop_after_frames and client.frames_sent >= self.drop_after_frames:
            self.drop_after_frames = None
            log.warning("dropping a client after %d frames (fault injection)", client.frames_sent)
            self.clients.discard(client)
            client.ws.transport.abort()


def _request_key(request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[len("Bearer ") :]
    query = request.path.partition("?")[2]
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "apiKey":
            return value
    return ""


def publish_labels(settings: Settings, data: ReplayData) -> None:
    """Write the labels to `data_dir/labels.csv` and the labels topic."""
    bar_store.write_labels(bar_store.labels_path(settings), data.labels)
    producer = make_producer(settings)
    topic = topic_name(LABELS, settings)
    for lb in data.labels:
        produce(producer, topic, encode(lb), key=lb.symbol, timestamp_ms=lb.start_ms)
    flush_or_raise(producer)
    log.info(
        "%d anomaly labels written to %s and %s",
        len(data.labels),
        bar_store.labels_path(settings),
        topic,
    )


def run(settings: Settings, frames_path: Path | None = None) -> None:
    """Serve until SIGINT/SIGTERM (the `tickwatch replay-server` command).

    With `frames_path`, serve that file of pre-encoded frames (see `read_frames`) to each
    subscriber instead of a market: no Kafka, labels or metrics are involved then."""
    if frames_path is not None:
        frames = read_frames(frames_path)
        log.info(
            "%d frames (%d bytes) read from %s", len(frames), sum(map(len, frames)), frames_path
        )
        _serve(settings, ReplayData([], []), frames)
        return
    if settings.replay.market_symbols:
        _serve_market(settings)
        return
    # bars: where a resume starts. The replay server stands in for the market feed and starts
    # before `tickwatch stack init` (compose and Kubernetes run init once it serves), so it
    # creates the two topics it needs rather than wait for init
    require_topics(settings, (LABELS, BARS), "replay-server", create=True)
    data = load_resumed(settings)
    publish_labels(settings, data)
    serve_metrics(settings.prometheus.replay_metrics_port, "replay")
    first_live = data.live[0].start_ms if data.live else 0
    log.info(
        "history: %d bars (REST); live from %s, %d bars at speed %s",
        len(data.history),
        first_live,
        len(data.live),
        settings.replay.speed,
    )
    note = resume_note(data)
    if note:
        log.log(logging.INFO if data.live else logging.WARNING, note)

    _serve(settings, data)


def _serve_market(settings: Settings) -> None:
    """The synthetic whole market (`replay.market_symbols`): `replay.days` sessions from the
    most recent ones, from their first minute each run (no resume, labels or REST history)."""
    r = settings.replay
    require_topics(settings, (BARS,), "replay-server", create=True)
    serve_metrics(settings.prometheus.replay_metrics_port, "replay")
    market = WholeMarket(r.market_symbols, r.seed, recent_start_day(r.days), r.days)
    log.info(
        "synthetic market: %d symbols, %d minutes at speed %s",
        len(market.symbols),
        market.minutes,
        r.speed,
    )
    _serve(settings, ReplayData([], []), market=market)


def _serve(
    settings: Settings,
    data: ReplayData,
    frames: Sequence[bytes] | None = None,
    market: WholeMarket | None = None,
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await ReplayServer(settings, data, frames=frames, market=market).serve(stop)

    asyncio.run(main())
