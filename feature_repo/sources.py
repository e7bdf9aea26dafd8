"""Feast data sources: a push source the stream writes through, backed by Parquet files."""

from __future__ import annotations

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat

TIMESTAMP_FIELD = "event_timestamp"  # bar start, UTC
OFFLINE_DIR = "offline"  # relative to the repo path get_store sets: settings.data_dir / "features"

# Historical features written by `tickwatch features materialize`, one Parquet file per symbol;
# training reads them point-in-time correct with get_historical_features.
bar_features_file = FileSource(
    name="bar_features_file",
    path=OFFLINE_DIR,  # made absolute per store by feature_repo.feature_store.apply_definitions
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP_FIELD,
    description="Offline bar features (Parquet, one file per symbol)",
)

# The streaming agents write the online store through this source's feature view.
bar_features_push = PushSource(
    name="bar_features_push",
    batch_source=bar_features_file,
    description="Rolling bar features pushed by the Faust features agent",
)
