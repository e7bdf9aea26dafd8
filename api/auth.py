"""API keys: which configured keys may serve, a constant-time lookup by name, a limit per key.

Keys are kept as sha256 digests and compared with `hmac.compare_digest` against every key, so
neither the time taken nor an early exit tells a caller how close its guess was. No message,
log line or response ever holds a key, only its name.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from tickwatch.settings import PLACEHOLDER_API_KEY, Settings

DEVELOPMENT = "development"
MIN_KEY_CHARS = 16  # outside development a shorter key is refused at start
DEFAULT_KEY_NAME = "default"  # the name of api.api_key among the named keys


class ApiKeyError(ValueError):
    """The configured keys may not serve (placeholder or short key outside development, none)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _variable(name: str) -> str:
    """The environment variable that sets the key `name`."""
    return "TICKWATCH_API__API_KEY" if name == DEFAULT_KEY_NAME else "TICKWATCH_API__API_KEYS"


def usable_keys(settings: Settings) -> dict[str, bytes]:
    """The sha256 digest of each configured key by name; ApiKeyError says why they may not serve."""
    env = settings.environment
    keys: dict[str, str] = {}
    default = settings.api.api_key.get_secret_value()
    if default:
        keys[DEFAULT_KEY_NAME] = default
    for name, secret in settings.api.api_keys.items():
        if name in keys:
            raise ApiKeyError(
                f"api.api_keys names a key {name!r}, the name of TICKWATCH_API__API_KEY"
            )
        if not secret.get_secret_value():
            raise ApiKeyError(f"API key {name!r} ({_variable(name)}) is empty")
        keys[name] = secret.get_secret_value()
    if not keys:
        raise ApiKeyError(
            "no API key is set: set TICKWATCH_API__API_KEY or TICKWATCH_API__API_KEYS"
        )
    if env != DEVELOPMENT:
        for name, key in keys.items():
            if key == PLACEHOLDER_API_KEY:
                raise ApiKeyError(
                    f"API key {name!r} ({_variable(name)}) is the development placeholder, "
                    f"refused in environment {env!r}: set it to a secret of at least "
                    f"{MIN_KEY_CHARS} characters"
                )
            if len(key) < MIN_KEY_CHARS:
                raise ApiKeyError(
                    f"API key {name!r} ({_variable(name)}) has {len(key)} characters, refused "
                    f"in environment {env!r}: use at least {MIN_KEY_CHARS}"
                )
    by_digest: dict[bytes, str] = {}
    for name, key in keys.items():
        other = by_digest.setdefault(_digest(key), name)
        if other != name:
            raise ApiKeyError(f"API keys {other!r} and {name!r} are the same key")
    return {name: digest for digest, name in by_digest.items()}


def key_name(keys: dict[str, bytes], presented: str | None) -> str | None:
    """The name of the key `presented` is, compared in constant time with every key; else None."""
    if presented is None:
        return None
    digest = _digest(presented)
    found = None
    for name, expected in keys.items():  # no early exit: every key is compared every time
        if hmac.compare_digest(digest, expected):
            found = name
    return found


class RateLimiter:
    """A token bucket per key name: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at monotonic s)

    def take(self, name: str, now: float | None = None) -> int:
        """0 when `name` may make a request (one token taken), else whole seconds to wait."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(name, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[name] = (tokens - 1.0, now)
            return 0
        self._buckets[name] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))
