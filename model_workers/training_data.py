"""The training set: point-in-time features from the Feast offline store, else from the bars."""

from __future__ import annotations

import logging

import pandas as pd

from model_workers.dataset import COLUMNS, frame_from_bars, training_frame
from tickwatch.bar_store import bars_from_frame, bars_root, labels_path, read_bars, read_labels
from tickwatch.features import Bar
from tickwatch.settings import Settings

log = logging.getLogger(__name__)


def load_training_frame(
    settings: Settings,
) -> tuple[pd.DataFrame, pd.DataFrame, str, list[Bar]]:
    """(feature frame, labels, source, bars) for the stored bars; source is "feast" or "bars"."""
    stored = read_bars(bars_root(settings))
    if stored.empty:
        raise RuntimeError(f"no bars under {bars_root(settings)}: run `tickwatch backfill` first")
    labels = read_labels(labels_path(settings))
    bars = bars_from_frame(stored)
    frame = feast_frame(settings, stored)
    if frame is None:
        log.info("Feast offline store empty: computing features from %d stored bars", len(bars))
        frame = frame_from_bars(
            bars, settings.features.market_symbol, settings.features.beta_window
        )
        return frame, labels, "bars", bars
    log.info("training set: %d rows point-in-time from the Feast offline store", len(frame))
    return frame, labels, "feast", bars


def feast_frame(settings: Settings, bars: pd.DataFrame) -> pd.DataFrame | None:
    """The features and warm flags the offline store holds, joined point-in-time onto every
    stored bar; None if the store has none."""
    from feature_repo.feature_services import TRAINING_REFS
    from feature_repo.feature_store import features_dir, get_store

    if not any((features_dir(settings) / "offline").glob("*.parquet")):
        return None
    store = get_store(settings)
    entity = pd.DataFrame(
        {
            "symbol": bars["symbol"].to_numpy(),
            "event_timestamp": pd.to_datetime(bars["timestamp"], unit="ms", utc=True),
            "bar_start_ms": bars["timestamp"].to_numpy(),
            "close": bars["close"].to_numpy(),
            "volume": bars["volume"].to_numpy(),
        }
    )
    hist = store.get_historical_features(entity_df=entity, features=list(TRAINING_REFS)).to_df()
    missing = hist[[*COLUMNS, "warm"]].isna().any(axis=1)
    if missing.all():
        return None
    if missing.any():
        log.warning("%d bars have no offline features; left out of training", int(missing.sum()))
    return training_frame(hist[~missing])
