"""Work-arounds for faust-streaming 0.15 on aiokafka >= 0.13 and Kafka 4, applied in the open.

1. `faust.transport.drivers.aiokafka.Producer.supports_headers()` reads `client.api_version`, which
   aiokafka 0.13 removed (the client now negotiates versions per connection with ApiVersions), so
   any caller gets AttributeError. Kafka 4 brokers (and every broker aiokafka >= 0.13 can talk to)
   support record headers, so the patched method answers True when the attribute is gone and
   defers to the original otherwise.

2. `faust.tables.recovery.Recovery.on_recovery_completed()` loses the stream records fetched
   while it seeks (faust-streaming issue 596, open). To read the changelogs, `_restart_recovery`
   resumes the consumer flow and never stops it again. `on_recovery_completed` then resumes the
   stream partitions, awaits `consumer.perform_seek()`, and only then calls
   `app.flow_control.resume()`, which CLEARS every agent queue (`clear_on_resume=True`). Records
   the fetcher delivered during the seek are dropped from the queue after Faust's read offset
   moved past them: they are never re-fetched or acked, so the committed offset stops at the
   gap; when the backlog was already fetched (a restart after kill -9), the agent sees no
   further event at all after "Worker ready". The patched method stops the consumer flow first,
   as Faust itself does on revocation, so nothing reaches a queue until the original has
   sought, cleared the queues and resumed the flow (in that order).

`tests/unit/stream_processors/test_compat.py` fails if a faust or aiokafka upgrade changes any of
this (a patch becomes unnecessary or stops applying).
"""

from __future__ import annotations

from typing import Any

from faust.exceptions import NotReady
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

_original_supports_headers = faust_aiokafka.Producer.supports_headers
_original_on_recovery_completed = Recovery.on_recovery_completed


def _supports_headers(self: Any) -> bool:
    """Headers are supported by every broker aiokafka >= 0.13 connects to (Kafka >= 0.11)."""
    client = self._ensure_producer().client
    if client is None:
        raise NotReady("Producer client not yet connected")
    if hasattr(client, "api_version"):
        return _original_supports_headers(self)
    return True


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    """Hold the consumer flow until the original has sought and cleared the agent queues."""
    self.app.consumer.stop_flow()
    await _original_on_recovery_completed(self, generation_id)


def needs_headers_patch() -> bool:
    """True when the installed aiokafka client no longer has `api_version`."""
    from aiokafka.client import AIOKafkaClient

    return not hasattr(AIOKafkaClient, "api_version")


def apply() -> None:
    """Install the work-arounds (idempotent)."""
    # the point of this module: replace faust's methods on the classes (see the docstring)
    faust_aiokafka.Producer.supports_headers = _supports_headers  # type: ignore[method-assign]
    Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
