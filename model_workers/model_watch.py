"""Reload the scorer when the champion alias moves, in a background thread (consumption goes on)."""

from __future__ import annotations

import logging
import threading

from detection.registry import champion_pair
from detection.scorer import Scorer
from tickwatch.metrics import ERRORS, MODEL_INFO
from tickwatch.settings import Settings

log = logging.getLogger(__name__)


class ModelWatcher:
    """Polls the registry every `interval_s`; a newly aliased pair is loaded off the hot path."""

    def __init__(self, settings: Settings, scorer: Scorer, interval_s: float) -> None:
        self.settings, self.interval_s = settings, interval_s
        self._current = scorer.versions
        self._ready: Scorer | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="model-watch", daemon=True)
        publish_model_info(scorer, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def take(self) -> Scorer | None:
        """A newly loaded scorer, once (None if the alias has not moved)."""
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    def check(self) -> bool:
        """Poll once; load the new champion pair if the alias moved. True if one was loaded."""
        versions = champion_pair(self.settings)
        if versions is None or versions == self._current:
            return False
        log.info("champion moved %s -> %s: loading", self._current, versions)
        scorer = Scorer.from_versions(self.settings, versions)
        scorer.warm_up()  # here, off the hot path, not on the first live batch after the swap
        with self._lock:
            self._ready = scorer
        self._current = versions
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the registry may be briefly unreachable: keep the current models
                ERRORS.labels("score", "model_reload").inc()
                log.exception("checking the champion alias failed; keeping the current models")


def publish_model_info(new: Scorer, old: Scorer | None) -> None:
    """Set tickwatch_model_info for the loaded versions (and clear the replaced ones)."""
    if old is not None:
        for m in (old.iforest, old.lstm):
            MODEL_INFO.remove(m.name, m.version)
    for m in (new.iforest, new.lstm):
        MODEL_INFO.labels(m.name, m.version).set(1)
