"""faust-streaming's aiokafka producer on the real Kafka 4 broker, with the compat patches."""

from __future__ import annotations

import asyncio

import pytest

from stream_processors.app import create_app
from tickwatch.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.timeout(60)
def test_faust_producer_reports_header_support_on_kafka4(settings: Settings) -> None:
    async def check() -> bool:
        app = create_app(settings)
        producer = app.producer
        await producer.start()
        try:
            return producer.supports_headers()
        finally:
            await producer.stop()

    assert asyncio.run(check()) is True
