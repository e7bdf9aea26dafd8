"""The one retry helper: exponential waits while the error is transient, a stop event ends them."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tickwatch.retry as retry_mod
from tickwatch.retry import JITTER, Stopped, async_retrying, backoff_s, retrying


class Flaky:
    def __init__(self, failures: int, error: type[BaseException] = ConnectionError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, value: int) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("down")
        return value * 2


def test_retries_with_doubling_waits_up_to_the_cap(monkeypatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(retry_mod.time, "sleep", lambda s: None)
    flaky = Flaky(6)
    got = retrying(ConnectionError, lambda exc, s: waits.append(s))(flaky, 21)
    assert got == 42 and flaky.calls == 7
    assert waits == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


def test_other_errors_are_raised_at_once() -> None:
    flaky = Flaky(1, ValueError)
    with pytest.raises(ValueError):
        retrying(ConnectionError, lambda exc, s: None)(flaky, 1)
    assert flaky.calls == 1


def test_a_set_stop_event_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    flaky = Flaky(100)
    with pytest.raises(Stopped):
        retrying(ConnectionError, lambda exc, s: None, stop=stop)(flaky, 1)
    assert flaky.calls == 1


def test_the_coroutine_version_retries_too() -> None:
    waits: list[float] = []
    flaky = Flaky(2)

    async def call() -> int:
        return flaky(5)

    got = asyncio.run(
        async_retrying(ConnectionError, lambda e, s: waits.append(s), first_s=0.001)(call)
    )
    assert got == 10 and waits == pytest.approx([0.001, 0.002])


def test_the_jittered_backoff_doubles_within_its_jitter_up_to_the_cap() -> None:
    for attempt in range(12):
        step = min(30.0, 0.5 * 2**attempt)
        waits = [backoff_s(attempt, 0.5, 30.0) for _ in range(50)]
        assert all(JITTER[0] * step <= w <= JITTER[1] * step for w in waits)
    assert backoff_s(5_000, 0.5, 30.0) <= 30.0  # no overflow however long it keeps failing
