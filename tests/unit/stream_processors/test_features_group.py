"""The features stage's consumer group follows the engine: what benchmarks wait for is the group
the worker joins."""

from __future__ import annotations

from stream_processors.app import create_app
from stream_processors.batch_worker import batch_group
from stream_processors.worker import features_group
from tickwatch.settings import Settings


def test_the_group_is_the_configured_engines() -> None:
    base = Settings(_env_file=None).model_copy(update={"topic_prefix": "g1-"})
    batch = base.model_copy(
        update={"features": base.features.model_copy(update={"engine": "batch"})}
    )
    assert features_group(base) == create_app(base).conf.id == "g1-tickwatch-features"
    assert features_group(batch) == batch_group(batch) == "g1-tickwatch-features-batch"
    assert features_group(base, "batch") == features_group(batch)
    assert features_group(batch, "faust") == features_group(base)
