"""Work-arounds for faust-streaming 0.15 on aiokafka >= 0.13 and Kafka 4, applied in the open.

1. `faust.transport.drivers.aiokafka.Producer.supports_headers()` reads `client.api_version`, which
   aiokafka 0.13 removed (the client now negotiates versions per connection with ApiVersions), so
   any caller gets AttributeError. Kafka 4 brokers (and every broker aiokafka >= 0.13 can talk to)
   support record headers, so the patched method answers True when the attribute is gone and
   defers to the original otherwise.

`tests/unit/stream_processors/test_compat.py` fails if a faust or aiokafka upgrade changes any of
this (the patch becomes unnecessary or stops applying).
"""

from __future__ import annotations

from typing import Any

from faust.exceptions import NotReady
from faust.transport.drivers import aiokafka as faust_aiokafka

_original_supports_headers = faust_aiokafka.Producer.supports_headers


def _supports_headers(self: Any) -> bool:
    """Headers are supported by every broker aiokafka >= 0.13 connects to (Kafka >= 0.11)."""
    client = self._ensure_producer().client
    if client is None:
        raise NotReady("Producer client not yet connected")
    if hasattr(client, "api_version"):
        return _original_supports_headers(self)
    return True


def needs_headers_patch() -> bool:
    """True when the installed aiokafka client no longer has `api_version`."""
    from aiokafka.client import AIOKafkaClient

    return not hasattr(AIOKafkaClient, "api_version")


def apply() -> None:
    """Install the work-arounds (idempotent)."""
    faust_aiokafka.Producer.supports_headers = _supports_headers
