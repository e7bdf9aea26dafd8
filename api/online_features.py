"""Latest online features of a symbol from Feast (Redis online store), loaded once per app."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import FastAPI

from tickwatch.settings import Settings

ENTITY_KEY = "symbol"
log = logging.getLogger(__name__)


class OnlineFeatures:
    """Tickwatch's FeatureStore (feature_repo.feature_store), opened on first use (Feast loads
    slowly)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._lock = threading.Lock()

    @property
    def service_name(self) -> str:
        """The feature service the API serves: every feature plus close, volume and warm."""
        from feature_repo.feature_services import ALL_SERVICE

        return ALL_SERVICE

    def store(self) -> Any:
        """The FeatureStore for the app's settings, opened once."""
        with self._lock:
            if self._store is None:
                from feature_repo.feature_store import get_store

                self._store = get_store(self.settings)
            return self._store

    def warm_up(self) -> None:
        """Open the store now if possible (at startup); failures are left for requests to report."""
        try:
            self.store()
        except Exception as exc:  # reported by /readyz and the features route
            log.warning("Feast store not opened at startup: %s", exc)

    def describe(self) -> str:
        """Project and feature service, raising if the registry does not have the service."""
        store = self.store()
        store.get_feature_service(self.service_name)
        return f"project {store.project}, feature service {self.service_name}"

    def latest(self, symbol: str) -> dict[str, Any]:
        """The symbol's online feature values (None where the online store has nothing)."""
        store = self.store()
        service = store.get_feature_service(self.service_name)
        rows = store.get_online_features(features=service, entity_rows=[{ENTITY_KEY: symbol}])
        return {k: v[0] for k, v in rows.to_dict().items() if k != ENTITY_KEY}


def online_store(app: FastAPI) -> OnlineFeatures:
    """The app's OnlineFeatures."""
    return app.state.online_features
