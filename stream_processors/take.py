"""Batches of a Faust stream's events that a lone burst does not wait for (`take_bursts`).

Faust's `Stream.take_events(max_, within)` hands its buffer over when it holds `max_` events or
when a `within`-second timer fires; the timer runs from the previous hand-over, so a lone
minute's bars (real time: one burst a minute) wait half of `within` on average and all of it at
worst. `take_bursts` keeps its contract (events acknowledged only after the caller handled the
batch, at most `max_` per batch) and its timer while events flow, but a batch that begins after
the stream was quiet for `within` ends as soon as no event came for `gap` seconds (as
`tickwatch.kafka.consume_batch` does). Ending every batch on the gap was tried: at replay speed
3840 (a minute's bars every 16 ms) the steps shrank to one minute each, every one paying its
flushes, and the stage fell seconds behind; a flow needs the timer's larger steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust


async def take_bursts(
    stream: faust.StreamT, max_: int, within: float, gap: float
) -> AsyncIterator[list[faust.EventT]]:
    """Lists of events of `stream` (see the module doc); each is acknowledged after the
    caller's loop body for it has run."""
    s: Any = stream  # the buffer hooks below are on faust's Stream, not on the StreamT protocol
    loop = asyncio.get_running_loop()
    events: list[faust.EventT] = []
    arrived = asyncio.Event()  # the buffer holds an event
    room = asyncio.Event()  # the buffer holds fewer than max_ events
    room.set()
    last = 0.0  # loop time of the newest event
    handed = -within  # loop time the previous batch was handled

    # a processor fills the buffer while the stream is drained in the background, as in
    # Stream.take_events; it holds the stream (backpressure) while the buffer is full
    async def add(value: Any) -> Any:
        nonlocal last
        try:
            await room.wait()
            event = s.current_event
            if event is None:
                raise RuntimeError("take_bursts found no current event")
            events.append(event)
            last = loop.time()
            arrived.set()
            if len(events) >= max_:
                room.clear()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            s.log.exception("Error adding to the take buffer: %r", exc)
            await s.crash(exc)
        return value

    enable_acks = s.enable_acks
    s.enable_acks = False  # acked below, after the caller handled them
    s.add_processor(add)
    s._enable_passive(aiter(s.channel))
    try:
        while not s.should_stop:
            await s.wait_for_stopped(arrived)
            started = loop.time()
            quiet = started - handed >= within  # a lone burst, not a flow
            while len(events) < max_ and not s.should_stop:
                now = loop.time()
                wait = (min(last + gap, started + within) if quiet else started + within) - now
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            batch = events[:]
            events.clear()
            arrived.clear()
            room.set()
            if batch:
                try:
                    yield batch
                finally:
                    for event in batch:
                        await s.ack(event)
                    handed = loop.time()
    finally:
        s.enable_acks = enable_acks
        s._processors.remove(add)
