"""The `tickwatch produce` service: Polygon (or replay) WebSocket -> Kafka, with reconnect+backfill.

After a dropped connection it reconnects with exponential backoff and jitter, resubscribes, then
fetches the minute bars it missed from REST (from the last published bar of each symbol) before
reading the stream again; the publisher drops bars it already sent, so the bars topic ends up
with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from producers.bar_watermarks import last_bar_starts
from producers.publisher import Publisher
from producers.rest import RestError, fetch_minute_bars
from producers.upstream import REPLAY_COMPLETE, Upstream, upstream_for
from tickwatch.metrics import RECONNECTS, serve_metrics
from tickwatch.retry import backoff_s
from tickwatch.schemas import DAY_MS, MINUTE_MS, MinuteBar
from tickwatch.settings import Settings
from tickwatch.topic_check import require_topics
from tickwatch.topics import BARS, DEAD_LETTER, QUOTES, TRADES

log = logging.getLogger(__name__)
FATAL_STATUSES = {"auth_failed", "max_connections", "auth_timeout"}
RECONNECT_FIRST_S = 0.5  # jittered backoff (tickwatch.retry.backoff_s) between reconnects
RECONNECT_MAX_S = 30.0
MAX_GAP_DAYS = 5  # live frames are held while a Polygon gap is filled: keep the gap bounded
FENCE_WAIT_S = 90.0  # a live minute bar comes every minute while the market is open
MAX_GAP_MS = MAX_GAP_DAYS * DAY_MS


class UpstreamRefused(RuntimeError):
    """The feed refused us for good (bad key, too many connections): retrying cannot help."""


def subscription(settings: Settings) -> str:
    """`EV.SYM` channel list for every configured channel and symbol (`*` = all symbols)."""
    symbols = ["*"] if "*" in settings.symbols else settings.symbols
    return ",".join(f"{ch}.{sym}" for ch in settings.polygon.channels for sym in symbols)


async def handshake(ws: ClientConnection, api_key: str, channels: str) -> None:
    """Read `connected`, authenticate, subscribe; raise UpstreamRefused on a refusal."""
    await _expect(ws, {"connected"})
    await ws.send(json.dumps({"action": "auth", "params": api_key}))
    await _expect(ws, {"auth_success"})
    await ws.send(json.dumps({"action": "subscribe", "params": channels}))
    log.info("subscribed to %s", channels)


async def _expect(ws: ClientConnection, wanted: set[str]) -> None:
    while True:
        text = await asyncio.wait_for(ws.recv(), timeout=30)
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            log.warning("unreadable frame before %s ignored: %r", "/".join(wanted), text[:200])
            continue
        for el in frame if isinstance(frame, list) else [frame]:
            status = el.get("status") if isinstance(el, dict) else None
            if status in wanted:
                return
            if status in FATAL_STATUSES:
                raise UpstreamRefused(_refusal_message(status, el.get("message", "")))
            log.info("status before %s: %s", "/".join(wanted), el)


def _first_bar_start(frame: str | bytes) -> int | None:
    """The earliest `AM` bar start in a frame, if it holds any."""
    if b'"AM"' not in frame if isinstance(frame, bytes) else '"AM"' not in frame:
        return None
    try:
        events = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    starts = (
        [
            e["s"]
            for e in events
            if isinstance(e, dict) and e.get("ev") == "AM" and type(e.get("s")) is int
        ]
        if isinstance(events, list)
        else []
    )
    return min(starts, default=None)


def _refusal_message(status: str, message: str) -> str:
    hint = {
        "auth_failed": "check TICKWATCH_POLYGON__API_KEY (or unset it to use the built-in "
        "replay server)",
        "max_connections": "another client is connected with this key; most plans allow "
        "one connection per cluster",
    }.get(status, "")
    return f"market data feed refused the connection: {status}: {message}. {hint}".strip()


class Producer:
    """One upstream feed into Kafka through one publisher."""

    def __init__(self, settings: Settings, upstream: Upstream, publisher: Publisher) -> None:
        self.settings = settings
        self.upstream = upstream
        self.publisher = publisher
        self.reconnects = 0
        self.backfilled = 0

    def resume_from_topic(self) -> None:
        """Start from the newest bar per symbol already in Kafka, so a restart backfills its gap."""
        if "AM" in self.settings.polygon.channels:
            self.publisher.last_bar_start.update(last_bar_starts(self.settings))
            log.info(
                "resuming after the bars already in Kafka for %d symbols",
                len(self.publisher.last_bar_start),
            )

    async def run(self, exit_at_end: bool = False) -> None:
        """Stream until cancelled (or until the replay ends, with `exit_at_end`)."""
        attempt = 0
        channels = subscription(self.settings)
        while True:
            try:
                async with connect(
                    self.upstream.ws_url,
                    max_size=self.settings.polygon.max_frame_bytes,
                    open_timeout=15,
                    ping_interval=20,
                    ping_timeout=20,
                ) as ws:
                    await handshake(ws, self.upstream.api_key, channels)
                    attempt = 0
                    if await self._read(ws, exit_at_end):
                        return
            except (ConnectionClosed, OSError, TimeoutError, InvalidHandshake, RestError) as exc:
                self.reconnects += 1
                RECONNECTS.labels("producer").inc()
                delay = backoff_s(attempt, RECONNECT_FIRST_S, RECONNECT_MAX_S)
                attempt += 1
                hint = (
                    " (is `tickwatch replay-server` running?)"
                    if (self.upstream.source == "replay" and isinstance(exc, OSError))
                    else ""
                )
                if isinstance(exc, ConnectionClosed) and exc.sent and exc.sent.code == 1009:
                    hint = (
                        " (a frame was larger than polygon.max_frame_bytes = "
                        f"{self.settings.polygon.max_frame_bytes})"
                    )
                log.warning(
                    "connection to %s lost (%s)%s; reconnecting in %.1fs",
                    self.upstream.ws_url,
                    exc or type(exc).__name__,
                    hint,
                    delay,
                )
                self.publisher.poll()
                await asyncio.sleep(delay)

    async def _read(self, ws: ClientConnection, exit_at_end: bool) -> bool:
        """Publish frames until the connection ends; True when the replay has completed.

        After a reconnect, frames are held back until the first live minute bar arrives: its
        start is the fence up to which the missed bars are fetched from REST, then the held
        frames are published, so REST and stream neither overlap nor leave a gap. Without a
        live bar for FENCE_WAIT_S (market closed), the gap is filled up to now.
        """
        if self._has_gap():
            held: list[tuple[str | bytes, int]] = []
            fence, deadline = None, time.monotonic() + FENCE_WAIT_S
            while True:
                try:
                    frame = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except TimeoutError:
                    break
                held.append((frame, int(time.time() * 1000)))
                fence = _first_bar_start(frame)
                if fence is not None or REPLAY_COMPLETE in str(frame):
                    break
            await self._backfill_gap(fence - 1 if fence is not None else int(time.time() * 1000))
            for frame, received in held:
                if self._publish(frame, received, exit_at_end):
                    return True
        async for frame in ws:
            if self._publish(frame, int(time.time() * 1000), exit_at_end):
                return True
        raise ConnectionClosed(None, None)

    def _publish(self, frame: str | bytes, received_ms: int, exit_at_end: bool) -> bool:
        parsed = self.publisher.publish_frame(frame, received_ms, self.upstream.source)
        for status, message in parsed.statuses:
            if status in FATAL_STATUSES:
                raise UpstreamRefused(_refusal_message(status, message))
            if status == REPLAY_COMPLETE and exit_at_end:
                return True
            log.debug("status %s: %s", status, message)
        return False

    def _has_gap(self) -> bool:
        return "AM" in self.settings.polygon.channels and bool(self.publisher.last_bar_start)

    async def _backfill_gap(self, until_ms: int) -> None:
        """From REST, the bars each symbol missed since its last published bar, to `until_ms`."""
        count = 0
        for symbol, last in sorted(self.publisher.last_bar_start.items()):
            start = last + MINUTE_MS
            if self.upstream.source == "polygon" and until_ms - start > MAX_GAP_MS:
                start = until_ms - MAX_GAP_MS
                log.warning(
                    "%s: gap longer than %d days; filling the last %d only (use "
                    "`tickwatch backfill` for the rest)",
                    symbol,
                    MAX_GAP_DAYS,
                    MAX_GAP_DAYS,
                )
            if start <= until_ms:
                bars = await asyncio.to_thread(self._fetch, symbol, start, until_ms)
                count += self.publisher.publish_bars(bars)
        self.backfilled += count
        log.info("backfilled %d bars missed while disconnected", count)

    def _fetch(self, symbol: str, start: int, end: int) -> list[MinuteBar]:
        with httpx.Client(timeout=30) as client:
            bars, refused = fetch_minute_bars(
                client, self.upstream.rest_url, self.upstream.api_key, symbol, start, end
            )
        for raw, reason in refused:
            self.publisher.dead_letters.send(raw, reason, kind="invalid_rest_bar", key=symbol)
        return bars


def run(settings: Settings, exit_at_end: bool = False) -> None:
    """`tickwatch produce`: stream into Kafka until SIGINT/SIGTERM; flush before exiting."""
    upstream = upstream_for(settings)
    require_topics(settings, (TRADES, QUOTES, BARS, DEAD_LETTER), "produce")
    log.info("streaming from %s (%s)", upstream.ws_url, upstream.source)
    serve_metrics(settings.prometheus.producer_metrics_port, "producer")
    publisher = Publisher(settings)
    producer = Producer(settings, upstream, publisher)
    producer.resume_from_topic()

    async def main() -> None:
        task = asyncio.create_task(producer.run(exit_at_end))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            log.info("stopping")

    try:
        asyncio.run(main())
    finally:
        publisher.flush()
        log.info(
            "delivered %s; %d reconnects, %d bars backfilled",
            dict(publisher.acked),
            producer.reconnects,
            producer.backfilled,
        )
