"""`/v1/models` (MLflow registry), `/v1/symbols/{symbol}/features` (Feast on Redis), `/readyz`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from api_support import api_server
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

from detection.registry import champion_pair
from tickwatch.features import FEATURE_NAMES
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
KEY = "dev-key-change-me"


def register_champion(settings: Settings, tmp_path) -> str:
    """A tiny sklearn model registered under the iforest name with the champion alias."""
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        exp = mlflow.set_experiment(settings.mlflow.experiment).experiment_id  # the test's own
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_metrics({"val_precision": 0.75, "val_recall": 0.5})
            model = LinearRegression().fit(np.arange(8.0).reshape(4, 2), np.arange(4.0))
            mlflow.sklearn.log_model(
                model, name="model", registered_model_name=settings.mlflow.iforest_model_name
            )
    finally:
        mlflow.set_tracking_uri(previous)
    client.set_registered_model_alias(
        settings.mlflow.iforest_model_name, settings.mlflow.champion_alias, "1"
    )
    return run.info.run_id


def write_online_features(settings: Settings, symbol: str) -> dict[str, float]:
    """One feature row for `symbol` in the online store, through Feast's own write API."""
    from feature_repo.feature_store import get_store
    from feature_repo.feature_views import FEATURE_VIEW

    values = {name: float(i) / 4 for i, name in enumerate(FEATURE_NAMES)}
    row = {
        "symbol": symbol,
        "event_timestamp": datetime.now(UTC),
        **values,
        "close": 101.5,
        "volume": 1200.0,
        "warm": True,
    }
    get_store(settings).write_to_online_store(FEATURE_VIEW, pd.DataFrame([row]))
    return values


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with (
        api_server(settings) as url,
        httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as c,
    ):
        yield c


def test_models_lists_champion_model_versions_with_metrics(
    settings: Settings, client: httpx.Client, tmp_path
) -> None:
    before = client.get("/v1/models")
    assert before.status_code == 200
    assert all(m["version"] is None for m in before.json()["models"])

    run_id = register_champion(settings, tmp_path)
    # the autoencoder's model exists but no version holds the alias: an unset alias (the
    # registry answers INVALID_PARAMETER_VALUE), not an outage
    MlflowClient(tracking_uri=settings.mlflow_tracking_uri).create_registered_model(
        settings.mlflow.lstm_model_name
    )
    assert champion_pair(settings) is None
    from api.routes import models as models_route

    models_route._cache.clear()  # the registry answer is cached for the TTL
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    iforest = models[settings.mlflow.iforest_model_name]
    assert iforest["version"] == "1" and iforest["alias"] == "champion"
    assert iforest["run_id"] == run_id
    assert iforest["metrics"] == {"val_precision": 0.75, "val_recall": 0.5}
    assert models[settings.mlflow.lstm_model_name]["version"] is None


def test_features_and_readiness(settings: Settings, tmp_path) -> None:
    values = write_online_features(settings, "AAPL")  # creates the Feast registry before the API
    with (
        api_server(settings) as url,
        httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as client,
    ):
        check_features_and_readiness(settings, client, tmp_path, values)


def check_features_and_readiness(
    settings: Settings, client: httpx.Client, tmp_path, values: dict[str, float]
) -> None:
    # the registry answers: ready, scoring not yet possible. A first touch of a fresh sqlite
    # registry runs its migrations and may outlast one probe's timeout, as it would for a pod.
    deadline = time.monotonic() + 60
    no_champion = client.get("/readyz")
    while no_champion.status_code != 200 and time.monotonic() < deadline:
        time.sleep(1)
        no_champion = client.get("/readyz")
    assert no_champion.status_code == 200, no_champion.text
    assert "no model holds the alias" in no_champion.json()["checks"]["models"]["detail"]

    resp = client.get("/v1/symbols/aapl/features")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["symbol"] == "AAPL" and body["feature_service"] == "tickwatch_all"
    assert {k: body["features"][k] for k in values} == values
    assert body["features"]["warm"] is True and body["features"]["close"] == 101.5
    missing = client.get("/v1/symbols/ZZZZ/features")
    assert missing.status_code == 404 and "ZZZZ" in missing.json()["detail"]
    assert client.get("/v1/symbols/bad$/features").status_code == 422

    register_champion(settings, tmp_path)
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks) == {"kafka", "redis", "feast", "models"}
    assert all(c["ok"] for c in checks.values())
    assert checks["models"]["detail"] == f"{settings.mlflow.iforest_model_name} v1"

    broken = settings.model_copy(
        update={
            "mlflow": settings.mlflow.model_copy(update={"tracking_uri": "http://127.0.0.1:9"}),
            "topic_prefix": "absent-",
        }
    )
    with api_server(broken) as url:
        down = httpx.get(f"{url}/readyz", timeout=60)
    assert down.status_code == 503
    assert not down.json()["checks"]["models"]["ok"] and not down.json()["checks"]["kafka"]["ok"]
    assert down.json()["checks"]["redis"]["ok"]


def test_an_unreachable_registry_is_a_503_naming_mlflow(settings: Settings, monkeypatch) -> None:
    """Scoring and the model list say the registry is down, not "no champion registered"."""
    broken = settings.model_copy(
        update={"mlflow": settings.mlflow.model_copy(update={"tracking_uri": "http://127.0.0.1:9"})}
    )
    # as `tickwatch api` runs: one retry of a refused registry call, not MLflow's default seven
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    bar = {
        "symbol": "AAPL",
        "start_ms": 1_700_000_040_000,
        "end_ms": 1_700_000_100_000,
        **{"open": 10.0, "high": 10.5, "low": 9.5, "close": 10.2, "vwap": 10.1, "volume": 100.0},
    }
    with (
        api_server(broken) as url,
        httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=120) as client,
    ):
        score = client.post("/v1/score", json={"bars": [bar]})
        models = client.get("/v1/models")
    for resp in (score, models):
        assert resp.status_code == 503, resp.text
        assert resp.json()["dependency"] == "mlflow" and resp.headers["Retry-After"] == "1"
