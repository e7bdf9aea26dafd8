"""The faust-streaming / aiokafka work-arounds still apply, and are still needed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream_processors import compat


def _producer_with(client: object) -> object:
    return SimpleNamespace(_ensure_producer=lambda: SimpleNamespace(client=client))


def test_aiokafka_client_still_lacks_api_version() -> None:
    # If this fails, aiokafka brought `api_version` back: the patch may be unnecessary now.
    assert compat.needs_headers_patch()


def test_unpatched_supports_headers_breaks_on_this_aiokafka() -> None:
    client = SimpleNamespace()  # what aiokafka >= 0.13 clients look like: no api_version
    with pytest.raises(AttributeError):
        compat._original_supports_headers(_producer_with(client))


def test_patched_supports_headers() -> None:
    compat.apply()
    assert faust_aiokafka.Producer.supports_headers is compat._supports_headers
    assert faust_aiokafka.Producer.supports_headers(_producer_with(SimpleNamespace())) is True
    old = SimpleNamespace(api_version=(0, 10))  # an old client still gets the original answer
    assert faust_aiokafka.Producer.supports_headers(_producer_with(old)) is False
