"""The newest anomaly per symbol as gauges: replaced by newer events, never by older ones."""

from __future__ import annotations

from prometheus_client import REGISTRY

from api.explanation_metrics import LatestExplanations
from tickwatch.schemas import AnomalyEvent, ModelScore, Reason, make_event_id

BASE = 1_767_225_600_000


def event(symbol: str, minute: int, severity: str, features: list[str]) -> AnomalyEvent:
    bar = BASE + minute * 60_000
    return AnomalyEvent(
        event_id=make_event_id(symbol, bar, "t"),
        symbol=symbol,
        bar_start_ms=bar,
        detected_at_ms=bar,
        severity=severity,
        close=10.0,
        scores=[ModelScore(model="iforest", version="1", score=1, threshold=0.5, flagged=True)],
        reasons=[
            Reason(feature=f, value=1.0, contribution=0.1 * (i + 1), model="iforest")
            for i, f in enumerate(features)
        ],
    )


def reason(symbol: str, feature: str) -> float | None:
    return REGISTRY.get_sample_value(
        "tickwatch_latest_anomaly_reason",
        {"symbol": symbol, "model": "iforest", "feature": feature},
    )


def shown_time(symbol: str, severity: str) -> float | None:
    return REGISTRY.get_sample_value(
        "tickwatch_latest_anomaly_timestamp_seconds", {"symbol": symbol, "severity": severity}
    )


def test_newest_event_per_symbol_replaces_the_previous_series() -> None:
    latest = LatestExplanations()
    latest.update(
        [
            event("XA", 1, "low", ["a", "b"]),
            event("XA", 3, "high", ["c"]),
            event("XB", 2, "medium", ["a"]),
        ]
    )
    assert shown_time("XA", "high") == (BASE + 3 * 60_000) / 1000
    assert reason("XA", "c") == 0.1 and reason("XA", "a") is None
    assert reason("XB", "a") == 0.1

    latest.update([event("XA", 2, "critical", ["z"])])  # older: ignored
    assert shown_time("XA", "high") is not None and reason("XA", "z") is None

    latest.update([event("XA", 5, "critical", ["d", "e"])])
    assert shown_time("XA", "high") is None and shown_time("XA", "critical") is not None
    assert reason("XA", "c") is None and reason("XA", "e") == 0.2
    assert reason("XB", "a") == 0.1  # other symbols untouched
