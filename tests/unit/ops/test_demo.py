"""The demo's dashboard URL is one a browser on this machine can open."""

from __future__ import annotations

import pytest

from ops.demo import dashboard_url
from tickwatch.settings import Settings


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123/dashboard"),
        ("0.0.0.0", "http://127.0.0.1:8123/dashboard"),
        ("tickwatch.local", "http://tickwatch.local:8123/dashboard"),
    ],
)
def test_dashboard_url(host: str, expected: str) -> None:
    base = Settings(_env_file=None)
    settings = base.model_copy(
        update={"api": base.api.model_copy(update={"host": host, "port": 8123})}
    )
    assert dashboard_url(settings) == expected
