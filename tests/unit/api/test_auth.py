"""Which API keys may serve, the lookup by name, and the per-key token bucket."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from api.auth import MIN_KEY_CHARS, ApiKeyError, RateLimiter, key_name, usable_keys
from tickwatch.settings import PLACEHOLDER_API_KEY, Settings

GOOD = "k3y-" + "x" * MIN_KEY_CHARS
OTHER = "n3w-" + "y" * MIN_KEY_CHARS


def _settings(environment: str, key: str, **named: str) -> Settings:
    s = Settings(_env_file=None, environment=environment)
    api = s.api.model_copy(
        update={"api_key": SecretStr(key), "api_keys": {n: SecretStr(k) for n, k in named.items()}}
    )
    return s.model_copy(update={"api": api})


@pytest.mark.parametrize(
    ("key", "named", "words"),
    [
        (PLACEHOLDER_API_KEY, {}, "development placeholder"),
        ("", {}, "no API key is set"),
        ("short-key", {}, f"at least {MIN_KEY_CHARS}"),
        (
            GOOD,
            {"old": PLACEHOLDER_API_KEY},
            r"'old' \(TICKWATCH_API__API_KEYS\) is the development",
        ),
        (GOOD, {"new": ""}, r"'new' \(TICKWATCH_API__API_KEYS\) is empty"),
        (GOOD, {"again": GOOD}, "are the same key"),
        (GOOD, {"default": OTHER}, "the name of TICKWATCH_API__API_KEY"),
    ],
)
def test_production_refuses_placeholder_empty_short_and_ambiguous_keys(key, named, words) -> None:
    with pytest.raises(ApiKeyError, match=words) as refused:
        usable_keys(_settings("production", key, **named))
    for secret in (key, *named.values()):
        if secret:  # the message names keys and their variable, never shows a key
            assert secret not in str(refused.value)


def test_development_accepts_the_placeholder_but_not_an_empty_key() -> None:
    assert set(usable_keys(_settings("development", PLACEHOLDER_API_KEY))) == {"default"}
    with pytest.raises(ApiKeyError, match="no API key is set"):
        usable_keys(_settings("development", ""))


def test_named_keys_are_all_valid_and_found_by_name() -> None:
    keys = usable_keys(_settings("production", GOOD, rotated=OTHER))
    assert key_name(keys, GOOD) == "default"
    assert key_name(keys, OTHER) == "rotated"
    assert key_name(keys, GOOD[:-1]) is None
    assert key_name(keys, GOOD + "x") is None
    assert key_name(keys, "") is None
    assert key_name(keys, None) is None
    only_named = usable_keys(_settings("production", "", ci=OTHER))
    assert set(only_named) == {"ci"} and key_name(only_named, OTHER) == "ci"


def test_the_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.take("a", now=100.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", now=100.0) == 1  # half a second to the next token, rounded up
    assert limiter.take("b", now=100.0) == 0  # each key has its own bucket
    assert limiter.take("a", now=100.5) == 0  # refilled one token
    assert limiter.take("a", now=100.5) == 1
    assert [limiter.take("a", now=200.0) for _ in range(4)] == [0, 0, 0, 1]  # never above burst


def test_a_slow_rate_asks_for_a_long_wait() -> None:
    limiter = RateLimiter(rate_per_s=0.01, burst=1)
    assert limiter.take("a", now=0.0) == 0
    assert limiter.take("a", now=0.0) == 100
