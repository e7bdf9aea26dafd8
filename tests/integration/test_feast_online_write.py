"""The batched online writer against real Redis, read back through Feast; a write cut off in
flight (a private redis-server paused, then killed) is written again once Redis is back."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from api_support import RedisServer
from prometheus_client import REGISTRY

from feature_repo.feature_services import ALL_SERVICE
from feature_repo.feature_store import get_store
from stream_processors.feast_push import FeatureRow, OnlineWriter
from stream_processors.outputs import FeatureOutputs
from tickwatch.features import FEATURE_NAMES
from tickwatch.settings import Settings

pytestmark = pytest.mark.integration
T0 = 1_764_000_000_000


def _row(i: int, start_ms: int, value: float) -> FeatureRow:
    feats = {name: value + k for k, name in enumerate(FEATURE_NAMES)}
    return FeatureRow(f"S{i:04d}", start_ms, 10.0 + i, 100.0 * i, feats, i % 2 == 0)


@pytest.mark.timeout(120)
def test_rows_in_several_pipelines_read_back_and_older_rows_never_win(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"features": settings.features.model_copy(update={"push_batch": 500})}
    )
    store = get_store(settings)
    writer = OnlineWriter(store, settings)
    n = 1200
    rows = [_row(i, T0, 0.5) for i in range(n)]
    assert writer.write([*rows, *(_row(i, T0 - 60_000, 9.0) for i in range(0, n, 7))]) == n
    assert writer.write([_row(i, T0 - 60_000, 9.0) for i in range(0, n, 3)]) == 0  # older
    assert writer.write([_row(5, T0 + 60_000, 2.5)]) == 1  # newer replaces
    fresh = OnlineWriter(store, settings)  # remembers nothing: reads the stored timestamps
    assert fresh.write([_row(i, T0 - 60_000, 9.0) for i in range(0, n, 5)]) == 0
    writer.forget()
    assert writer.write([_row(5, T0 + 60_000, 7.0), _row(6, T0, 7.0)]) == 0  # not newer

    symbols = [f"S{i:04d}" for i in range(n)]
    got = store.get_online_features(
        features=store.get_feature_service(ALL_SERVICE),
        entity_rows=[{"symbol": s} for s in symbols],
    ).to_dict()
    for i, symbol in enumerate(symbols):
        base = 2.5 if i == 5 else 0.5
        assert got["symbol"][i] == symbol
        assert [got[name][i] for name in FEATURE_NAMES] == [
            base + k for k in range(len(FEATURE_NAMES))
        ]
        assert got["close"][i] == 10.0 + i and got["warm"][i] == (i % 2 == 0)


def _redis_errors() -> float:
    labels = {"stage": "features", "kind": "redis"}
    return REGISTRY.get_sample_value("tickwatch_errors_total", labels) or 0.0


@pytest.mark.timeout(120)
def test_a_write_cut_off_in_flight_is_written_again_once_redis_is_back(
    settings: Settings, tmp_path
) -> None:
    server = RedisServer(tmp_path / "redis-feast")
    server.start()
    try:
        s = settings.model_copy(
            update={"redis": settings.redis.model_copy(update={"port": server.port, "db": 0})}
        )
        store = get_store(s)
        outputs = FeatureOutputs(s, OnlineWriter(store, s), "features")
        n = 300
        outputs.finish_online(outputs.start_online([_row(i, T0, 0.5) for i in range(n)]), [])
        newer = [_row(i, T0 + 60_000, 4.0) for i in range(n)]

        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # Redis takes the bytes but never answers
        pending = outputs.start_online(newer)  # stored timestamps known: nothing to read first
        assert pending is not None
        before = _redis_errors()
        server.proc.kill()  # the connection drops with the write unanswered
        server.proc.wait(10)
        restart = threading.Timer(1.5, server.start)  # same port, empty data
        restart.start()
        outputs.finish_online(pending, newer)  # retries until the restarted Redis takes it
        restart.join()
        assert _redis_errors() > before

        got = store.get_online_features(
            features=store.get_feature_service(ALL_SERVICE),
            entity_rows=[{"symbol": f"S{i:04d}"} for i in range(n)],
        ).to_dict()
        assert got["return_z"] == [4.0 + FEATURE_NAMES.index("return_z")] * n
        assert got["close"] == [10.0 + i for i in range(n)]
    finally:
        server.stop()
