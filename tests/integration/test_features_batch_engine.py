"""The batch features engine against real Kafka and Redis: same features, exactly once, recovery."""

from __future__ import annotations

import re
import time

import pytest
from api_support import free_port
from confluent_kafka import KafkaError, KafkaException
from features_support import (
    FeatureReader,
    assert_hop_observed,
    expected_features,
    kill9_mid_stream,
    read_dead_letters,
    recent_bars,
    recovered_counts,
    send_bars,
    start_worker,
    stop_worker,
)

from feature_repo.feature_services import ALL_SERVICE
from feature_repo.feature_store import get_store
from stream_processors.batch_worker import BatchFeaturesWorker
from stream_processors.feast_push import OnlineWriter
from tickwatch.features import FEATURE_NAMES
from tickwatch.settings import Settings

pytestmark = pytest.mark.integration
SYMBOLS = ["AAPL", "MSFT", "TSLA", "VOO"]


def _assert_exact(reader: FeatureReader, expected: dict) -> None:
    """Every expected vector, equal to the pure functions, each one exactly once."""
    assert set(reader.vectors) == set(expected)
    for key, (feats, warm) in expected.items():
        assert reader.vectors[key].features == pytest.approx(feats, rel=1e-12, abs=1e-12), key
        assert reader.vectors[key].warm == warm
    assert reader.messages == len(expected)


def _assert_online(settings: Settings, expected: dict, symbols: list[str]) -> None:
    store = get_store(settings)
    got = store.get_online_features(
        features=store.get_feature_service(ALL_SERVICE),
        entity_rows=[{"symbol": s} for s in symbols],
    ).to_dict()
    for i, symbol in enumerate(symbols):
        feats, warm = expected[max(k for k in expected if k[0] == symbol)]
        assert [got[n][i] for n in FEATURE_NAMES] == pytest.approx(
            [feats[n] for n in FEATURE_NAMES], rel=1e-12, abs=1e-12
        )
        assert got["warm"][i] == warm


def _recovered(log) -> list[tuple[int, set[int]]]:  # type: ignore[no-untyped-def]
    found = re.findall(r"features: (\d+) symbols recovered on partitions \[([\d, ]*)\]", log)
    return [(int(n), {int(p) for p in ps.split(",") if p.strip()}) for n, ps in found]


@pytest.mark.timeout(240)
def test_batch_engine_equals_the_pure_functions_once_each(settings: Settings, tmp_path) -> None:
    bars = recent_bars(SYMBOLS, 800, seed=3)
    expected = expected_features(settings, bars)
    aapl = [b for b in bars if b.symbol == "AAPL"]
    late = aapl[5].model_copy(update={"close": aapl[5].close * 1.01, "high": aapl[5].high * 1.02})
    send_bars(settings, [*bars, aapl[-1], late])  # then a duplicate and an out-of-order bar
    port = free_port()
    proc = start_worker(settings, tmp_path / "worker.log", engine="batch", metrics_port=port)
    reader = FeatureReader(settings, "check")
    try:
        assert reader.read_until(len(expected), 120, proc) == len(expected)
        reader.read_until(len(expected) + 1, 3, proc)  # nothing more may come
        assert_hop_observed(port, len(expected), proc)
    finally:
        stop_worker(proc)
        reader.close()
    _assert_exact(reader, expected)
    assert reader.headers_ok
    _assert_online(settings, expected, SYMBOLS)
    dead = read_dead_letters(settings)
    assert [d.reason.split(":")[0] for d in dead] == ["out_of_order"]
    assert dead[0].key == "AAPL"


@pytest.mark.timeout(300)
def test_batch_engine_kill9_resumes_exactly_once(settings: Settings, tmp_path) -> None:
    bars = recent_bars(SYMBOLS, 1200, seed=5)
    expected = expected_features(settings, bars)
    reader, killed_at = kill9_mid_stream(settings, bars, tmp_path, "batch")
    assert killed_at < len(expected)
    recovered = recovered_counts(tmp_path / "restarted.log")
    assert recovered and recovered[0] == len(SYMBOLS)  # state came back from the changelog
    _assert_exact(reader, expected)  # read_committed: no vector twice, none lost
    _assert_online(settings, expected, SYMBOLS)


@pytest.mark.timeout(300)
def test_two_batch_workers_split_the_partitions(settings: Settings, tmp_path) -> None:
    symbols = [*SYMBOLS, "AMZN", "META", "NVDA", "NFLX", "IBM", "ORCL", "INTC", "AMD"]
    bars = recent_bars(symbols, 1800, seed=8)
    expected = expected_features(settings, bars)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [
        start_worker(settings, log, "INFO", engine="batch", instance=f"w{i}")
        for i, log in enumerate(logs)
    ]
    reader = FeatureReader(settings, "check")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both in the group, each with part of the topic
            owned = [_recovered(log.read_text()) for log in logs]
            if all(owned) and all(o[-1][1] and len(o[-1][1]) < 6 for o in owned):
                break
            time.sleep(0.5)
        send_bars(settings, bars)
        assert reader.read_until(len(expected), 200, procs[0]) == len(expected)
    finally:
        for proc in procs:
            stop_worker(proc)
        reader.close()
    _assert_exact(reader, expected)
    owned = [_recovered(log.read_text())[-1][1] for log in logs]
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    assert owned[0] | owned[1] == set(range(settings.kafka.default_partitions))


class _CommitFailsOnce:
    """The worker's transactional producer, whose `at`-th commit fails as an abortable error
    would (a broker restart that outlasts the retries, a transaction the coordinator aborted)."""

    def __init__(self, producer, at: int) -> None:  # type: ignore[no-untyped-def]
        self.producer, self.at, self.commits, self.failed = producer, at, 0, False

    def commit_transaction(self, *args) -> None:  # type: ignore[no-untyped-def]
        self.commits += 1
        if self.commits == self.at:
            self.failed = True
            raise KafkaException(KafkaError(KafkaError._STATE, "test", txn_requires_abort=True))
        self.producer.commit_transaction(*args)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.producer, name)


@pytest.mark.timeout(240)
def test_batch_engine_rewinds_a_step_whose_commit_failed(settings: Settings, tmp_path) -> None:
    """The stage loop aborts the step, seeks back to the committed offsets and reloads the
    committed state; the running worker goes on and every vector is emitted exactly once."""
    s = settings.model_copy(
        update={"features": settings.features.model_copy(update={"step_bars": 100})}
    )
    bars = recent_bars(SYMBOLS, 600, seed=4)
    expected = expected_features(s, bars)
    send_bars(s, bars)
    worker = BatchFeaturesWorker(s, OnlineWriter(get_store(s), s), "rewind")
    failing = _CommitFailsOnce(worker.producer, at=3)
    worker.loop.producer = failing  # type: ignore[assignment]
    reader = FeatureReader(s, "check")
    try:
        deadline = time.monotonic() + 120
        while len(reader.vectors) < len(expected):
            assert time.monotonic() < deadline, "the worker did not catch up"
            worker.step()
            reader.read_until(len(expected), 0.2)
        reader.read_until(len(expected) + 1, 3)  # nothing more may come
    finally:
        worker.close()
        reader.close()
    assert failing.failed and failing.commits > 3
    _assert_exact(reader, expected)
    _assert_online(s, expected, SYMBOLS)
