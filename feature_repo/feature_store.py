"""Open tickwatch's Feast store from Settings: Redis online store, Parquet offline store.

Paths and the Redis db are settings, so every service opens the store through `get_store` instead
of a static feature_store.yaml (that file is kept for the `feast` CLI with the local defaults).
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from feast import FeatureStore, RepoConfig
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig

from tickwatch.settings import Settings

PROJECT = "tickwatch"
REGISTRY_FILE = "registry.db"


def features_dir(settings: Settings) -> Path:
    """The Feast repo path: registry and the Parquet offline store (`data_dir/features`)."""
    return settings.data_dir / "features"


def repo_config(settings: Settings) -> RepoConfig:
    """The RepoConfig for these settings (entity key serialization version 3)."""
    root = features_dir(settings)
    redis = settings.redis
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=str(root / REGISTRY_FILE),
        online_store=RedisOnlineStoreConfig(
            connection_string=f"{redis.host}:{redis.port},db={redis.db}"
        ),
        # DuckDB joins point-in-time with a range join; the dask "file" store merges every entity
        # row with every feature row of its symbol first (20 days x 5 symbols: 19 GB, OOM).
        offline_store=DuckDBOfflineStoreConfig(),
        entity_key_serialization_version=3,
        repo_path=root,
    )


def definitions() -> list:
    """Every Feast object tickwatch defines."""
    from feature_repo.entities import symbol
    from feature_repo.feature_services import tickwatch_all, tickwatch_model
    from feature_repo.feature_views import bar_features
    from feature_repo.sources import bar_features_file, bar_features_push

    return [
        symbol,
        bar_features_file,
        bar_features_push,
        bar_features,
        tickwatch_model,
        tickwatch_all,
    ]


def apply_definitions(store: FeatureStore) -> None:
    """Register (or update) the definitions in the store's registry.

    The DuckDB offline store reads the source path as given (not relative to the repo), so the
    file source is registered with this store's absolute Parquet glob.
    """
    from feature_repo.sources import OFFLINE_DIR, bar_features_file

    root = Path(store.config.repo_path or ".")
    bar_features_file.file_options.uri = str((root / OFFLINE_DIR / "*.parquet").resolve())
    store.apply(definitions())


def registry_is_current(store: FeatureStore) -> bool:
    """True when the registry holds this version's feature view: its fields are the features
    `tickwatch.features` names today (a version that adds a feature finds an older view)."""
    from feast.errors import FeatureViewNotFoundException

    from feature_repo.feature_views import FEATURE_VIEW, bar_features

    try:
        view = store.get_feature_view(FEATURE_VIEW)
    except FeatureViewNotFoundException:
        return False
    return [f.name for f in view.features] == [f.name for f in bar_features.features]


def get_store(settings: Settings) -> FeatureStore:
    """The FeatureStore for these settings; applies the definitions when the registry is missing
    or was written by a version with other features (an upgrade: historical reads of the new
    features would otherwise fail with "not found in projection")."""
    root = features_dir(settings)
    (root / "offline").mkdir(parents=True, exist_ok=True)
    config = repo_config(settings)
    # Under a file lock, so a process opening the store while another applies the definitions
    # waits for the finished registry instead of reading a half-written, empty one.
    with open(root / ".apply.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = FeatureStore(config=config)
        if not (root / REGISTRY_FILE).exists() or not registry_is_current(store):
            apply_definitions(store)
    return store
