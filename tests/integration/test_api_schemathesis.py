"""Property-based API test: schemathesis generates requests from the OpenAPI spec; never a 500.

A 503 naming the dependency that did not answer is the API's designed reply to an outage (the
outage tests prove it), so it is not counted as a server error here; a 500 always is.

In-process ASGI against real Redis (seeded through the store) and Kafka, with registered champion
models and the API key header, and a bounded number of examples per operation so the run stays
short. The live stream is left out (it
never ends); it has its own test.
"""

from __future__ import annotations

from contextlib import ExitStack

import httpx
import pytest
import redis
import schemathesis
from api_support import make_event
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from model_support import with_models

from api.anomaly_store import AnomalyStore
from api.main import create_app
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
KEY = "dev-key-change-me"
EXAMPLES = 50


def seed(settings: Settings) -> None:
    client = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)
    events = [
        make_event(sym, minute, severity)
        for sym in ("AAPL", "MSFT")
        for minute, severity in enumerate(("low", "medium", "high", "critical"))
    ]
    AnomalyStore(client, 30).write_batch(events)


def send(client: TestClient, case: schemathesis.Case) -> httpx.Response:
    """Send a case in-process (schemathesis' requests transport breaks under urllib3-future)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers={"X-API-Key": KEY})
    data = kwargs.pop("data", None)
    if isinstance(data, (bytes, str)):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    kwargs.pop("verify", None), kwargs.pop("allow_redirects", None), kwargs.pop("timeout", None)
    return client.request(**kwargs)


def names_a_dependency(response: httpx.Response) -> bool:
    """A designed 503: a backing service was briefly down and the body says which."""
    if response.status_code != 503:
        return False
    try:
        return bool(response.json().get("dependency"))
    except ValueError:
        return False


def test_no_server_errors_on_generated_requests(settings: Settings, tmp_path) -> None:
    settings = with_models(settings, tmp_path)  # champion models: /v1/score and /readyz work
    seed(settings)
    stack = ExitStack()
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.exclude(path="/v1/anomalies/stream").get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/anomalies",
        "/v1/anomalies/{event_id}",
        "/v1/symbols/{symbol}/features",
        "/v1/models",
        "/v1/score",
        "/healthz",
        "/readyz",
    }
    failures: list[str] = []
    client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = send(client, case)
            if response.status_code >= 500 and not names_a_dependency(response):
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} -> "
                    f"{response.status_code} {response.text[:300]}"
                )

        check()
    stack.close()
    assert not failures, "\n".join(failures[:10])
