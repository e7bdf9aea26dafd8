"""One retry helper (tenacity) for the stages' waits on a dependency that is down, and the one
jittered backoff.

`retrying` retries a call while it raises one of the given errors: first after `first_s`, then
twice as long each time up to `max_s`, forever (a stage holds its batch until the dependency is
back rather than lose it), calling `on_retry(error, seconds)` before each wait. With a `stop`
event the wait ends as soon as it is set, with `Stopped`. `async_retrying` is the same for a
coroutine (the Faust agent's writes).

`backoff_s` is the same doubling wait with jitter, for the loops that count their own attempts:
the producer's reconnect (the count starts again after a good connection) and its REST retries
(a server's Retry-After comes first). Clients that failed together then do not retry together.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable

import redis
import tenacity

FIRST_S = 0.2
MAX_S = 2.0
JITTER = (0.5, 1.0)  # a jittered wait is the doubling one times a random factor in this range
# a Redis that is down or unreachable: retried, the write is held rather than lost
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)

OnRetry = Callable[[BaseException, float], None]
Errors = type[BaseException] | tuple[type[BaseException], ...]


def backoff_s(attempt: int, first_s: float = FIRST_S, max_s: float = MAX_S) -> float:
    """The jittered wait before retry `attempt` (0 for the first): `first_s` doubled per
    attempt up to `max_s`, times a random factor in JITTER (never above `max_s`, never below
    half the step)."""
    return random.uniform(*JITTER) * min(max_s, first_s * 2.0 ** min(attempt, 64))


class Stopped(Exception):
    """The stop event was set while waiting to retry."""


def _before_sleep(on_retry: OnRetry) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if exc is not None:
            on_retry(exc, wait)

    return before_sleep


def retrying(
    errors: Errors,
    on_retry: OnRetry,
    *,
    first_s: float = FIRST_S,
    max_s: float = MAX_S,
    stop: threading.Event | None = None,
) -> tenacity.Retrying:
    """`retrying(...)(fn, *args)` calls fn until it returns, retrying while it raises `errors`
    (anything else is raised at once)."""

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise Stopped

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(errors),
        wait=tenacity.wait_exponential(multiplier=first_s, max=max_s),
        sleep=sleep,
        before_sleep=_before_sleep(on_retry),
        reraise=True,
    )


def async_retrying(
    errors: Errors, on_retry: OnRetry, *, first_s: float = FIRST_S, max_s: float = MAX_S
) -> tenacity.AsyncRetrying:
    """`await async_retrying(...)(coroutine_function, *args)`: `retrying` for coroutines."""
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(errors),
        wait=tenacity.wait_exponential(multiplier=first_s, max=max_s),
        sleep=asyncio.sleep,
        before_sleep=_before_sleep(on_retry),
        reraise=True,
    )
