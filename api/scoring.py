"""The champion scorer for `POST /v1/score`, loaded on first use (TensorFlow never at startup).

The detection library is imported inside `ChampionScorer.get`, so the API process starts without
TensorFlow; the loaded pair is reused until the champion alias moves (checked at most every
`RECHECK_S` seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from tickwatch.metrics import ERRORS
from tickwatch.schemas import MinuteBar
from tickwatch.settings import Settings

RECHECK_S = 30.0
log = logging.getLogger(__name__)


class NoChampion(LookupError):
    """No model version holds the champion alias."""


class UnscorableBars(ValueError):
    """The bars are valid one by one but their features are not all finite (the API: 422)."""


class ChampionScorer:
    """Holds one detection.scorer.Scorer for the current champion versions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._scorer: Any = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The Scorer for the champion versions, loading or reloading it when they change."""
        from detection.registry import champion_pair
        from detection.scorer import Scorer

        with self._lock:
            if self._scorer is not None and time.monotonic() - self._checked < RECHECK_S:
                return self._scorer
            try:
                versions = champion_pair(self.settings)
            except Exception:
                if self._scorer is None:
                    raise  # nothing loaded: the route answers 503 naming the registry
                # the registry is briefly unreachable: keep serving the loaded pair, retry later
                ERRORS.labels("api", "model_reload").inc()
                log.warning("champion lookup failed; keeping %s", self._scorer.version)
                self._checked = time.monotonic()
                return self._scorer
            if versions is None:
                raise NoChampion("no champion model loaded")
            if self._scorer is None or self._scorer.versions != versions:
                self._scorer = Scorer.from_versions(self.settings, versions)
            self._checked = time.monotonic()
            return self._scorer

    def score(self, bars: list[MinuteBar]) -> tuple[str, list[Any]]:
        """(model version string, one RowScore per bar that has features) for the bars."""
        from detection.scorer import NonFiniteFeatures, vectors_from_bars

        scorer = self.get()
        f = self.settings.features
        try:
            vectors = vectors_from_bars(bars, f.market_symbol, f.beta_window)
        except NonFiniteFeatures as exc:
            raise UnscorableBars(str(exc)) from exc
        return scorer.version, scorer.score(vectors)
