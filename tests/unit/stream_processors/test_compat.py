"""The faust-streaming / aiokafka work-arounds still apply, and are still needed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream_processors import compat


def _producer_with(client: object) -> object:
    return SimpleNamespace(_ensure_producer=lambda: SimpleNamespace(client=client))


def test_aiokafka_client_still_lacks_api_version() -> None:
    # If this fails, aiokafka brought `api_version` back: the patch may be unnecessary now.
    assert compat.needs_headers_patch()


def test_unpatched_supports_headers_breaks_on_this_aiokafka() -> None:
    client = SimpleNamespace()  # what aiokafka >= 0.13 clients look like: no api_version
    with pytest.raises(AttributeError):
        compat._original_supports_headers(_producer_with(client))


def test_patched_supports_headers() -> None:
    compat.apply()
    assert faust_aiokafka.Producer.supports_headers is compat._supports_headers
    assert faust_aiokafka.Producer.supports_headers(_producer_with(SimpleNamespace())) is True
    old = SimpleNamespace(api_version=(0, 10))  # an old client still gets the original answer
    assert faust_aiokafka.Producer.supports_headers(_producer_with(old)) is False


class _Consumer:
    """Just enough of a Faust consumer to replay `on_recovery_completed` against a backlog."""

    def __init__(self, backlog: dict[str, list[int]]) -> None:
        self.flow_active = True  # as `_restart_recovery` leaves it after reading the changelogs
        self.resumed: set[str] = set()
        self.backlog = backlog  # records waiting in Kafka, per stream partition
        self.queue: list[tuple[str, int]] = []  # the agent's queue (cleared on flow resume)

    def assignment(self) -> set[str]:
        return {"bars-0", "state-changelog-0"}

    def resume_partitions(self, tps: set[str]) -> None:
        self.resumed |= tps

    def stop_flow(self) -> None:
        self.flow_active = False

    def resume_flow(self) -> None:
        self.flow_active = True

    async def perform_seek(self) -> None:
        # The fetcher runs while the seek is awaited: with the flow active it hands the
        # resumed partitions' records to the agent queue and moves its read offset past them.
        if self.flow_active:
            for tp in sorted(self.resumed):
                self.queue += [(tp, offset) for offset in self.backlog.pop(tp, [])]


def _recovery(consumer: _Consumer) -> SimpleNamespace:
    async def anoop(*args: object) -> None:
        return None

    async def wait(coro: object, timeout: float | None = None) -> None:
        await coro

    log = SimpleNamespace(info=lambda *a: None, dev=lambda *a: None, warning=lambda *a: None)
    app = SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=1,
        conf=SimpleNamespace(broker_request_timeout=1.0),
        on_rebalance_complete=SimpleNamespace(send=anoop),
        flow_control=SimpleNamespace(resume=consumer.queue.clear),  # clear_on_resume queues
        _fetcher=SimpleNamespace(maybe_start=anoop),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=lambda: None,
    )
    return SimpleNamespace(
        app=app,
        log=log,
        tables=SimpleNamespace(
            values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None
        ),
        actives_for_table={},
        standbys_for_table={},
        completed=SimpleNamespace(set=lambda: None),
        _set_recovery_ended=lambda: None,
        _is_changelog_tp=lambda tp: "changelog" in tp,
        _wait=wait,
    )


def test_unpatched_recovery_drops_the_records_fetched_during_its_seek() -> None:
    # If this fails, faust no longer clears the queues after the stream partitions resumed
    # with the flow active (issue 596 fixed): the recovery patch may be unnecessary now.
    consumer = _Consumer({"bars-0": [164, 165, 166]})
    asyncio.run(compat._original_on_recovery_completed(_recovery(consumer), 1))
    assert consumer.backlog == {}  # fetched, so the fetcher will not hand them over again
    assert consumer.queue == []  # ... and cleared from the agent queue: lost


def test_patched_recovery_keeps_the_flow_stopped_until_the_queues_are_cleared() -> None:
    compat.apply()
    assert Recovery.on_recovery_completed is compat._on_recovery_completed
    consumer = _Consumer({"bars-0": [164, 165, 166]})
    asyncio.run(Recovery.on_recovery_completed(_recovery(consumer), 1))
    assert consumer.backlog == {"bars-0": [164, 165, 166]}  # still to be fetched, none lost
    assert consumer.resumed == {"bars-0"}  # the stream partition is resumed, changelog not
    assert consumer.flow_active  # and the flow is running again
