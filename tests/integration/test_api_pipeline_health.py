"""`/v1/pipeline/health` against the stack's real Prometheus, and a 503 when it is unreachable."""

from __future__ import annotations

import httpx
import pytest
from api_support import api_server, free_port
from pydantic import SecretStr

from api.pipeline_health import BY_HOP, BY_STAGE, TOTALS
from tickwatch.metrics import Hop
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "test-key-health-41ac"


def with_key(settings: Settings, **prometheus: object) -> Settings:
    return settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"api_key": SecretStr(KEY)}),
            "prometheus": settings.prometheus.model_copy(update=prometheus),
        }
    )


def test_every_number_comes_from_a_query_prometheus_accepts(settings: Settings) -> None:
    s = with_key(settings)
    with api_server(s) as url:
        assert httpx.get(f"{url}/v1/pipeline/health").status_code == 401
        resp = httpx.get(f"{url}/v1/pipeline/health", headers={"X-API-Key": KEY}, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["prometheus"] == s.prometheus.url
    assert set(TOTALS) | set(BY_STAGE) | set(BY_HOP) <= set(body["queries"])
    # every scrape job of the stack's Prometheus config is listed, up or not
    jobs = {"tickwatch-producer", "tickwatch-features", "tickwatch-score", "tickwatch-sink"}
    assert jobs <= set(body["services_up"])
    for name in TOTALS:
        assert body[name] is None or body[name] >= 0
    # hops with records in the window (the e2e test sees all of them), each p50 <= its p99
    p50, p99 = body["hop_latency_p50_s"], body["hop_latency_p99_s"]
    assert set(p50) == set(p99) and set(p99) <= set(Hop)
    assert all(0 <= p50[hop] <= p99[hop] for hop in p99)


def test_an_unreachable_prometheus_is_a_503_naming_it(settings: Settings) -> None:
    s = with_key(settings, port=free_port())
    with api_server(s) as url:
        resp = httpx.get(f"{url}/v1/pipeline/health", headers={"X-API-Key": KEY}, timeout=10)
    assert resp.status_code == 503
    assert resp.json()["dependency"] == "prometheus"
