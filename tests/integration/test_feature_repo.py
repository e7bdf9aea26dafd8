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
