"""Real services for integration tests: the local stack, started once (or reused) per test run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from model_support import delete_registered_models, registry_settings, trained_registry

from ops import stack
from ops.stack.redis_claim import claim_redis_db, release_redis_db
from tickwatch.kafka import delete_prefixed_topics, ensure_topics
from tickwatch.settings import Settings


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Start Kafka, Redis, Prometheus and MLflow unless already healthy; stop what we started."""
    settings = Settings(_env_file=None)
    started = stack.up(settings)
    yield settings
    if trained_registry.cache_info().currsize:  # the models the model tests trained, if any
        delete_registered_models(trained_registry().settings)
    if started:
        stack.down(settings, only=started)


@pytest.fixture
def settings(stack_settings: Settings, tmp_path) -> Iterator[Settings]:
    """Settings for one test: its own topic prefix (topics created), Redis db, run folder, and
    its own experiment and model names on the stack's MLflow server."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    db = claim_redis_db(stack_settings, prefix)
    s = registry_settings(stack_settings, prefix).model_copy(
        update={
            "topic_prefix": prefix,
            "redis": stack_settings.redis.model_copy(update={"db": db}),
            "run_dir": tmp_path / "run",
        }
    )
    ensure_topics(s)
    r = redis.Redis(s.redis.host, s.redis.port, db=db)
    r.flushdb()
    yield s
    r.flushdb()
    release_redis_db(s, db)
    delete_prefixed_topics(s)
    delete_registered_models(s)
