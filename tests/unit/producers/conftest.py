"""A Publisher wired to an address where no broker listens: records queue, nothing is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from producers.publisher import Publisher
from tickwatch.settings import Settings


@pytest.fixture
def offline_publisher() -> Iterator[Callable[..., Publisher]]:
    """Factory of offline Publishers; their queues are purged afterwards, so the producers are
    destroyed at once instead of logging failed connections until the session ends."""
    made: list[Publisher] = []

    def make(stage: str, symbols: list[str] | None = None) -> Publisher:
        base = Settings(_env_file=None, **({"symbols": symbols} if symbols else {}))
        settings = base.model_copy(
            update={"kafka": base.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})}
        )
        made.append(Publisher(settings, stage=stage))
        return made[-1]

    yield make
    for publisher in made:
        for producer in (publisher.producer, publisher.trade_producer):
            producer.purge()
            producer.flush(0)
    made.clear()
