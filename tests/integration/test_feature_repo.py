"""The offline store: materialized bars read back point-in-time correct through Feast."""

from __future__ import annotations

import pandas as pd
import pytest

from feature_repo.feature_services import MODEL_SERVICE
from feature_repo.feature_store import features_dir, get_store
from feature_repo.materialize import materialize_bars
from producers.market_sim import simulate
from tickwatch.bar_store import bars_to_frame
from tickwatch.features import MODEL_FEATURES, compute_features_batch
from tickwatch.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_materialize_then_historical_features_equal_the_batch_functions(settings: Settings) -> None:
    bars = simulate(["AAPL", "TSLA", "VOO"], 2, seed=11).bars
    frame = bars_to_frame(bars)
    assert materialize_bars(settings, frame) == len(bars)
    files = sorted((features_dir(settings) / "offline").glob("*.parquet"))
    before = [pd.read_parquet(f) for f in files]
    assert materialize_bars(settings, frame) == len(bars)  # idempotent: same rows, same files
    assert all(pd.read_parquet(f).equals(b) for f, b in zip(files, before, strict=True))
    assert len(files) == 3 and sum(len(b) for b in before) == len(bars)

    expected = {(b.symbol, b.start_ms): f for b, f, _ in compute_features_batch(bars)}
    # entity rows between bars: the point-in-time join must pick the bar at or before each time
    picks = frame.iloc[::53][["symbol", "timestamp"]]
    entity_df = pd.DataFrame(
        {
            "symbol": picks["symbol"].values,
            "event_timestamp": pd.to_datetime(
                picks["timestamp"].values + 30_000, unit="ms", utc=True
            ),
        }
    )
    store = get_store(settings)
    got = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(MODEL_SERVICE)
    ).to_df()
    assert len(got) == len(entity_df)
    for row in got.to_dict("records"):
        start = int(row["event_timestamp"].timestamp() * 1000) - 30_000
        want = expected[(row["symbol"], start)]
        assert [row[n] for n in MODEL_FEATURES] == pytest.approx([want[n] for n in MODEL_FEATURES])


@pytest.mark.timeout(120)
def test_a_registry_written_before_a_feature_existed_is_reapplied(settings: Settings) -> None:
    from feast import FeatureStore, FeatureView

    from feature_repo.entities import symbol
    from feature_repo.feature_store import apply_definitions, registry_is_current, repo_config
    from feature_repo.feature_views import FEATURE_VIEW, bar_features
    from feature_repo.sources import bar_features_push

    features_dir(settings).joinpath("offline").mkdir(parents=True, exist_ok=True)
    old = FeatureStore(config=repo_config(settings))
    apply_definitions(old)
    # what an earlier version registered: the same view without its newest feature
    older = FeatureView(
        name=FEATURE_VIEW,
        entities=[symbol],
        ttl=bar_features.ttl,
        schema=[f for f in bar_features.schema if f.name != "market_volume_excess"],
        source=bar_features_push,
        online=True,
    )
    old.apply([older])
    assert not registry_is_current(FeatureStore(config=repo_config(settings)))

    store = get_store(settings)
    names = [f.name for f in store.get_feature_view(FEATURE_VIEW).features]
    assert "market_volume_excess" in names
    assert registry_is_current(store)
