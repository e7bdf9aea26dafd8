"""Batch job: historical bars -> the shared feature functions -> the Parquet offline store.

Training then reads point-in-time correct rows with
`store.get_historical_features(entity_df, features=list(feature_services.TRAINING_REFS))`.
Rolling state starts empty, so pass the whole history (the default reads every stored bar);
re-running with the same bars rewrites the same rows (one file per symbol, keyed by timestamp).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from feature_repo.feature_store import features_dir
from feature_repo.sources import OFFLINE_DIR, TIMESTAMP_FIELD
from tickwatch.bar_store import bars_from_frame
from tickwatch.features import FEATURE_NAMES, compute_features_batch
from tickwatch.settings import Settings

OFFLINE_COLUMNS = ["symbol", TIMESTAMP_FIELD, *FEATURE_NAMES, "close", "volume", "warm"]


def features_frame(settings: Settings, bars_frame: pd.DataFrame) -> pd.DataFrame:
    """Offline-store rows (OFFLINE_COLUMNS) for these bars, from compute_features_batch."""
    rows = [
        (bar.symbol, bar.start_ms, *(feats[n] for n in FEATURE_NAMES), bar.close, bar.volume, warm)
        for bar, feats, warm in compute_features_batch(
            bars_from_frame(bars_frame),
            settings.features.market_symbol,
            settings.features.beta_window,
        )
    ]
    df = pd.DataFrame(rows, columns=OFFLINE_COLUMNS)
    df[TIMESTAMP_FIELD] = pd.to_datetime(df[TIMESTAMP_FIELD].astype("int64"), unit="ms", utc=True)
    return df.astype({"warm": bool})


def materialize_bars(settings: Settings, bars_frame: pd.DataFrame) -> int:
    """Compute features for these bars and merge them into the offline store; returns row count."""
    df = features_frame(settings, bars_frame)
    root = features_dir(settings) / OFFLINE_DIR
    root.mkdir(parents=True, exist_ok=True)
    for symbol, part in df.groupby("symbol"):
        path = root / f"{symbol}.parquet"
        if path.exists():
            part = pd.concat([pd.read_parquet(path), part], ignore_index=True)
        part = (
            part.drop_duplicates(TIMESTAMP_FIELD, keep="last")
            .sort_values(TIMESTAMP_FIELD)
            .reset_index(drop=True)
        )
        _replace_atomically(part, path)
    return len(df)


def materialize_stored_bars(settings: Settings) -> int:
    """Materialize every bar in the Parquet bar store (`data_dir/bars`)."""
    from tickwatch.bar_store import bars_root, read_bars

    return materialize_bars(settings, read_bars(bars_root(settings)))


def _replace_atomically(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
