"""The features service against real Kafka and Redis: stream == batch, online store, recovery."""

from __future__ import annotations

import re
import time

import pytest
from api_support import free_port
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
from tickwatch.features import FEATURE_NAMES
from tickwatch.settings import Settings

pytestmark = pytest.mark.integration
SYMBOLS = ["AAPL", "MSFT", "TSLA", "VOO"]


def _online(settings: Settings, symbols: list[str]) -> dict[str, dict[str, object]]:
    store = get_store(settings)
    got = store.get_online_features(
        features=store.get_feature_service(ALL_SERVICE),
        entity_rows=[{"symbol": s} for s in symbols],
    ).to_dict()
    return {s: {k: got[k][i] for k in got} for i, s in enumerate(symbols)}


def _assert_matches(reader: FeatureReader, expected: dict) -> None:
    assert set(reader.vectors) == set(expected)
    for key, (feats, warm) in expected.items():
        vec = reader.vectors[key]
        assert vec.features == pytest.approx(feats, rel=1e-12, abs=1e-12), key
        assert vec.warm == warm


@pytest.mark.timeout(240)
def test_stream_equals_batch_in_topic_and_online_store(settings: Settings, tmp_path) -> None:
    bars = recent_bars(SYMBOLS, 800, seed=3)
    expected = expected_features(settings, bars)
    aapl = [b for b in bars if b.symbol == "AAPL"]
    late = aapl[5].model_copy(update={"close": aapl[5].close * 1.01, "high": aapl[5].high * 1.02})
    # each bar once, then a repeat of a recent bar (duplicate) and an old bar (out of order)
    send_bars(settings, [*bars, aapl[-1], late])
    port = free_port()
    proc = start_worker(settings, tmp_path / "worker.log", metrics_port=port)
    reader = FeatureReader(settings, "check")
    try:
        assert reader.read_until(len(expected), 120, proc) == len(expected)
        assert_hop_observed(port, len(expected), proc)
    finally:
        stop_worker(proc)
        reader.close()
    _assert_matches(reader, expected)
    assert reader.messages == len(expected)  # the duplicate produced nothing
    assert reader.headers_ok

    online = _online(settings, SYMBOLS)
    for symbol in SYMBOLS:
        last = max(k for k in expected if k[0] == symbol)
        feats, warm = expected[last]
        row = online[symbol]
        assert [row[n] for n in FEATURE_NAMES] == pytest.approx(
            [feats[n] for n in FEATURE_NAMES], rel=1e-12, abs=1e-12
        )
        assert row["warm"] == warm
        assert row["close"] == reader.vectors[last].close

    dead = read_dead_letters(settings)
    assert [d.reason.split(":")[0] for d in dead] == ["out_of_order"]
    assert dead[0].key == "AAPL"


@pytest.mark.timeout(300)
def test_kill9_mid_stream_recovers_to_the_uninterrupted_result(
    settings: Settings, tmp_path
) -> None:
    bars = recent_bars(SYMBOLS, 1200, seed=5)
    expected = expected_features(settings, bars)
    reader, killed_at = kill9_mid_stream(settings, bars, tmp_path, "faust")
    assert killed_at < len(expected)
    recovered = recovered_counts(tmp_path / "restarted.log")
    assert recovered and recovered[0] == len(SYMBOLS)  # state came back from the changelog
    _assert_matches(reader, expected)
    online = _online(settings, SYMBOLS)
    for symbol in SYMBOLS:
        last = max(k for k in expected if k[0] == symbol)
        assert [online[symbol][n] for n in FEATURE_NAMES] == pytest.approx(
            [expected[last][0][n] for n in FEATURE_NAMES], rel=1e-12, abs=1e-12
        )


def _bars_assignment(log) -> str | None:
    """The worker's latest bars-topic assignment as Faust logs it, e.g. "{0-2}"."""
    found = re.findall(r"-bars\s+\|\s+(\{[^}]*\})", log.read_text())
    return found[-1] if found else None


@pytest.mark.timeout(300)
def test_two_workers_split_the_partitions_and_produce_the_same_features(
    settings: Settings, tmp_path
) -> None:
    symbols = [*SYMBOLS, "AMZN", "META", "NVDA", "NFLX", "IBM", "ORCL", "INTC", "AMD"]
    bars = recent_bars(symbols, 1800, seed=8)
    expected = expected_features(settings, bars)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_worker(settings, log, level="INFO") for log in logs]
    reader = FeatureReader(settings, "check")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both in the group, each with part of the topic
            split = [_bars_assignment(log) for log in logs]
            if all(split) and "{0-5}" not in split:
                break
            time.sleep(0.5)
        send_bars(settings, bars)
        assert reader.read_until(len(expected), 200, procs[0]) == len(expected)
    finally:
        for proc in procs:
            stop_worker(proc)
        reader.close()
    _assert_matches(reader, expected)
    owned = []
    for log in logs:
        found = re.findall(r"symbols recovered on partitions \[([\d, ]*)\]", log.read_text())
        assert found, log  # this worker processed bars
        owned.append({int(p) for p in found[-1].split(",") if p.strip()})
    assert owned[0] and owned[1] and not owned[0] & owned[1]
