"""A Redis db of the shared stack's Redis that no other test run or benchmark uses meanwhile.

Tests, the end-to-end suite and benchmarks run beside each other on the one local Redis, and a
flush of a db another run writes to loses its data. Each claims a db (1-63) with a key in db 0
that expires after an hour, so a run killed before it released its db frees it eventually.
"""

from __future__ import annotations

import random

import redis

from tickwatch.settings import Settings

DB_CLAIM = "tickwatch:test-db:"  # in db 0: which run holds which db
CLAIM_TTL_S = 3600


def claim_redis_db(settings: Settings, owner: str) -> int:
    """A Redis db (1-63) no other run holds, even a test run or benchmark going on beside this."""
    r0 = redis.Redis(settings.redis.host, settings.redis.port, db=0)
    for db in random.sample(range(1, 64), 63):
        if r0.set(f"{DB_CLAIM}{db}", owner, nx=True, ex=CLAIM_TTL_S):
            return db
    raise RuntimeError("every Redis db 1-63 is claimed")


def release_redis_db(settings: Settings, db: int) -> None:
    """Give back a db from `claim_redis_db`."""
    redis.Redis(settings.redis.host, settings.redis.port, db=0).delete(f"{DB_CLAIM}{db}")
