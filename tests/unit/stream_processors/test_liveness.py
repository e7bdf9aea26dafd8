"""The stall guard: records waiting + no event for the stall time = stalled; nothing else is."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from stream_processors import liveness
from stream_processors.liveness import (
    StallGuard,
    next_offsets,
    pending_records,
    stalled_partitions,
)

BARS = [TP("bars", 0), TP("bars", 1), TP("bars", 2)]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_next_offset_is_the_later_of_last_taken_plus_one_and_committed() -> None:
    # p0: stream took up to 240 (committed 164 is older); p1: nothing taken since the restart;
    # p2: a taken offset left from an earlier assignment, behind the committed one
    taken = {BARS[0]: 240, BARS[2]: 10}
    committed = {BARS[0]: 164, BARS[1]: 164, BARS[2]: 300}
    assert next_offsets(taken, committed) == {BARS[0]: 241, BARS[1]: 164, BARS[2]: 300}
    assert next_offsets({}, {BARS[0]: None}) == {}  # nothing known: asked of the broker


def test_pending_is_highwater_minus_next_offset_where_both_are_known() -> None:
    highwaters = {BARS[0]: 300, BARS[1]: None, BARS[2]: 300}
    assert pending_records(highwaters, {BARS[0]: 241, BARS[1]: 0}) == {BARS[0]: 59}


def test_stalled_only_with_records_waiting_and_no_event_for_the_stall_time() -> None:
    pending = {BARS[0]: 59, BARS[1]: 0, BARS[2]: 7}
    last_event = {BARS[0]: 100.0, BARS[1]: 100.0, BARS[2]: 190.0}
    assert stalled_partitions(pending, last_event, 50.0, 230.0, stall_s=120.0) == [BARS[0]]
    assert stalled_partitions(pending, last_event, 50.0, 219.0, stall_s=120.0) == []


def test_the_stall_time_counts_from_ready_not_from_an_event_before_it() -> None:
    pending = {BARS[0]: 59, BARS[1]: 3}
    # p0's last event came before the worker became ready (at 200); p1 never had one
    assert stalled_partitions(pending, {BARS[0]: 100.0}, 200.0, 319.0, stall_s=120.0) == []
    assert stalled_partitions(pending, {BARS[0]: 100.0}, 200.0, 320.0, stall_s=120.0) == BARS[:2]


def _app(
    highwater: int, taken: int | None, committed: int | None = 164, earliest: int = 0
) -> SimpleNamespace:
    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, earliest)

    consumer = SimpleNamespace(
        assignment=lambda: {BARS[0], TP("state-changelog", 0)},
        highwater=lambda tp: highwater,
        _committed_offset={} if committed is None else {BARS[0]: committed},
        earliest_offsets=earliest_offsets,
    )
    monitor = SimpleNamespace(
        tp_read_offsets={} if taken is None else {BARS[0]: taken}, stream_inbound_time={}
    )
    return SimpleNamespace(consumer=consumer, monitor=monitor, rebalancing=False, in_recovery=False)


def test_guard_reports_after_the_stall_time_from_ready(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(liveness.time, "monotonic", lambda: now[0])
    app = _app(highwater=300, taken=None)
    guard = StallGuard(app, "bars", "features", stall_s=120.0)
    assert _run(guard.check()) == []  # ready from now on
    now[0] += 119.0
    assert _run(guard.check()) == []
    now[0] += 1.0
    assert _run(guard.check()) == [BARS[0]]
    app.monitor.tp_read_offsets[BARS[0]] = 299  # the stream caught up: nothing waits
    assert _run(guard.check()) == []


def test_guard_restarts_its_clock_after_a_rebalance(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(liveness.time, "monotonic", lambda: now[0])
    app = _app(highwater=300, taken=200)
    guard = StallGuard(app, "bars", "features", stall_s=120.0)
    _run(guard.check())
    now[0] += 100.0
    app.rebalancing = True
    assert _run(guard.check()) == []
    app.rebalancing = False
    now[0] += 100.0
    assert _run(guard.check()) == []  # 200 s since the first check, 100 s since the rebalance ended
    now[0] += 120.0
    assert _run(guard.check()) == [BARS[0]]


def test_enforce_exits_with_the_stalled_code(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(liveness.time, "monotonic", lambda: now[0])
    exits: list[int] = []
    monkeypatch.setattr(liveness.os, "_exit", exits.append)
    guard = StallGuard(_app(highwater=300, taken=None), "bars", "features", stall_s=120.0)
    _run(guard.enforce())
    assert exits == []
    now[0] += 120.0
    before = liveness.ERRORS.labels("features", "stalled")._value.get()
    _run(guard.enforce())
    assert exits == [liveness.EXIT_STALLED]
    assert liveness.ERRORS.labels("features", "stalled")._value.get() == before + 1


def test_guard_waits_for_the_consumer() -> None:
    from faust.exceptions import ConsumerNotStarted

    def not_started() -> set:
        raise ConsumerNotStarted("Consumer thread not yet started")

    app = _app(highwater=300, taken=None)
    app.consumer.assignment = not_started
    assert _run(StallGuard(app, "bars", "features").check()) == []


def test_guard_counts_from_the_earliest_offset_when_nothing_was_taken_or_committed(
    monkeypatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(liveness.time, "monotonic", lambda: now[0])
    stuck = StallGuard(_app(300, None, committed=None), "bars", "features", stall_s=120.0)
    expired = StallGuard(  # every record deleted by retention: nothing waits
        _app(300, None, committed=None, earliest=300), "bars", "features", stall_s=120.0
    )
    assert _run(stuck.check()) == [] and _run(expired.check()) == []
    now[0] += 120.0
    assert _run(stuck.check()) == [BARS[0]]
    assert _run(expired.check()) == []
