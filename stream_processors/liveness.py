"""Stall guard of the Faust worker: exit non-zero when input waits but the agent receives nothing.

Defence in depth behind `stream_processors.compat` (tickwatch issue 5): a Faust worker that reports
ready yet never hands its agent another record looks healthy from outside. Every CHECK_S seconds,
outside rebalances, the guard compares each assigned input partition's highwater with the next
offset the stream should take: last taken + 1, else the committed offset, else (nothing taken or
committed yet) the partition's earliest offset.
When records wait and the stream took none for STALL_S seconds, it logs an error, counts it
(`tickwatch_errors_total{kind="stalled"}`) and ends the process with EXIT_STALLED, so a
supervisor restarts it; the restarted worker recovers from the changelogs and committed offsets,
as after a kill -9.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted

from tickwatch.metrics import ERRORS

log = logging.getLogger(__name__)
STALL_S = 120.0
CHECK_S = 5.0
EXIT_STALLED = 70  # EX_SOFTWARE


def next_offsets(taken: Mapping[Any, int], committed: Mapping[Any, int | None]) -> dict[Any, int]:
    """The next offset the stream should take, per partition where taken or committed is known."""
    out = {tp: offset for tp, offset in committed.items() if offset is not None}
    for tp, offset in taken.items():
        out[tp] = max(out.get(tp, offset + 1), offset + 1)
    return out


def pending_records(
    highwaters: Mapping[Any, int | None], next_offset: Mapping[Any, int | None]
) -> dict[Any, int]:
    """Records waiting per partition: highwater minus the next offset the stream should take.

    Partitions without a highwater or a next offset yet are left out (nothing known waits).
    """
    pending = {}
    for tp, high in highwaters.items():
        start = next_offset.get(tp)
        if high is not None and start is not None:
            pending[tp] = high - start
    return pending


def stalled_partitions(
    pending: Mapping[Any, int],
    last_event: Mapping[Any, float],
    ready_at: float,
    now: float,
    stall_s: float = STALL_S,
) -> list[Any]:
    """Partitions with records waiting whose stream took no event for `stall_s` since ready."""
    return sorted(
        tp
        for tp, waiting in pending.items()
        if waiting > 0 and now - max(last_event.get(tp, ready_at), ready_at) >= stall_s
    )


class StallGuard:
    """Watches one input topic of a Faust app (see the module docstring)."""

    def __init__(self, app: faust.App, topic: str, stage: str, stall_s: float = STALL_S) -> None:
        self.app = app
        self.topic = topic
        self.stage = stage
        self.stall_s = stall_s
        self.ready_at: float | None = None

    async def check(self) -> list[Any]:
        """The stalled partitions now (empty while rebalancing or recovering)."""
        app = self.app
        now = time.monotonic()
        if app.rebalancing or app.in_recovery:
            self.ready_at = None
            return []
        if self.ready_at is None:
            self.ready_at = now
        consumer = app.consumer
        try:
            mine = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        except ConsumerNotStarted:
            return []
        monitor = app.monitor
        starts = next_offsets(
            {tp: monitor.tp_read_offsets[tp] for tp in mine if tp in monitor.tp_read_offsets},
            # private to faust's aiokafka Consumer (what app.consumer is), not on ConsumerT
            {tp: consumer._committed_offset.get(tp) for tp in mine},  # type: ignore[attr-defined]
        )
        unknown = [tp for tp in mine if tp not in starts]
        if unknown:
            starts.update(await consumer.earliest_offsets(*unknown))
        pending = pending_records({tp: consumer.highwater(tp) for tp in mine}, starts)
        return stalled_partitions(
            pending, monitor.stream_inbound_time, self.ready_at, now, self.stall_s
        )

    async def enforce(self) -> None:
        """Log, count and exit with EXIT_STALLED if a partition is stalled."""
        stalled = await self.check()
        if not stalled:
            return
        ERRORS.labels(self.stage, "stalled").inc()
        log.error(
            "%s: no record reached the agent for %.0f s while records wait on %s; exiting with "
            "%d so the supervisor restarts the worker",
            self.stage,
            self.stall_s,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stalled),
            EXIT_STALLED,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_STALLED)


def register_stall_guard(app: faust.App, topic: str, stage: str) -> StallGuard:
    """Check `topic`'s partitions every CHECK_S seconds on `app`."""
    guard = StallGuard(app, topic, stage)

    @app.timer(interval=CHECK_S)
    async def stall_guard() -> None:
        await guard.enforce()

    return guard
