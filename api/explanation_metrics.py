"""The newest anomaly of each symbol as Prometheus gauges, so dashboards can show explanations.

One series per symbol for its time and severity, and one per contributing feature; the previous
anomaly's series are removed, so cardinality stays symbols x (top features per model).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tickwatch.metrics import LATEST_ANOMALY, LATEST_REASON
from tickwatch.schemas import AnomalyEvent


@dataclass(frozen=True)
class _Shown:
    bar_start_ms: int
    severity: str
    reasons: tuple[tuple[str, str], ...]  # (model, feature)


class LatestExplanations:
    """Keeps the gauges on the newest anomaly seen per symbol (older and repeated ones ignored)."""

    def __init__(self) -> None:
        self.shown: dict[str, _Shown] = {}

    def update(self, events: Iterable[AnomalyEvent]) -> None:
        """Show each symbol's newest event of `events` if it is newer than what is shown."""
        newest: dict[str, AnomalyEvent] = {}
        for e in events:
            if e.symbol not in newest or e.bar_start_ms > newest[e.symbol].bar_start_ms:
                newest[e.symbol] = e
        for symbol, event in newest.items():
            prev = self.shown.get(symbol)
            if prev is not None and prev.bar_start_ms >= event.bar_start_ms:
                continue
            if prev is not None:
                LATEST_ANOMALY.remove(symbol, prev.severity)
                for model, feature in prev.reasons:
                    LATEST_REASON.remove(symbol, model, feature)
            LATEST_ANOMALY.labels(symbol, event.severity).set(event.bar_start_ms / 1000)
            for reason in event.reasons:
                LATEST_REASON.labels(symbol, reason.model, reason.feature).set(reason.contribution)
            self.shown[symbol] = _Shown(
                event.bar_start_ms,
                event.severity,
                tuple(dict.fromkeys((r.model, r.feature) for r in event.reasons)),
            )
