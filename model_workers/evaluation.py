"""Event-level evaluation: flagged bars -> alerts (with cooldown) matched against labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tickwatch.schemas import MINUTE_MS

MATCH_TAIL_MINUTES = 5  # an alert up to 5 minutes after a labelled event still detects it


def alerts_from_flags(
    symbols: np.ndarray, ts: np.ndarray, flags: np.ndarray, cooldown_minutes: int
) -> np.ndarray:
    """Bool per row: a flagged bar with no flagged bar of its symbol in the previous cooldown.

    Rows must be sorted by symbol then time. The worker applies the same rule, so one ongoing
    event gives one alert.
    """
    out = np.zeros(len(flags), dtype=bool)
    last: dict[str, int] = {}
    window = cooldown_minutes * MINUTE_MS
    for i in np.flatnonzero(flags):
        s, t = symbols[i], int(ts[i])
        prev = last.get(s)
        out[i] = prev is None or t - prev > window
        last[s] = t
    return out


@dataclass(frozen=True)
class EventMetrics:
    """Event-level quality of one detector."""

    alerts: int
    true_alerts: int
    events: int
    detected: int
    precision: float
    recall: float
    f1: float
    false_alarms_per_symbol_day: float
    mean_delay_minutes: float
    recall_by_type: dict[str, float]

    def row(self, name: str) -> dict[str, object]:
        """A flat dict for tables and MLflow metrics."""
        out: dict[str, object] = {
            "detector": name,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "false_alarms_per_symbol_day": self.false_alarms_per_symbol_day,
            "mean_delay_min": self.mean_delay_minutes,
            "alerts": self.alerts,
            "events": self.events,
        }
        out.update({f"recall_{k}": v for k, v in sorted(self.recall_by_type.items())})
        return out


def evaluate_alerts(
    frame: pd.DataFrame, alerts: np.ndarray, labels: pd.DataFrame, symbol_days: int
) -> EventMetrics:
    """Precision/recall/F1 of alerts against labels [start, end + tail], delay, per-type recall."""
    sym = frame["symbol"].to_numpy()
    ts = frame["bar_start_ms"].to_numpy()
    alert_idx = np.flatnonzero(alerts)
    matched = np.zeros(len(alert_idx), dtype=bool)
    delays: list[float] = []
    by_type: dict[str, list[bool]] = {}
    a_sym, a_ts = sym[alert_idx], ts[alert_idx]
    for lab in labels.itertuples(index=False):
        hit = (
            (a_sym == lab.symbol)
            & (a_ts >= int(lab.start))
            & (a_ts <= int(lab.end) + MATCH_TAIL_MINUTES * MINUTE_MS)
        )
        matched |= hit
        found = bool(hit.any())
        by_type.setdefault(str(lab.type), []).append(found)
        if found:
            delays.append((a_ts[hit].min() - int(lab.start)) / MINUTE_MS)
    n_alerts, true_alerts = len(alert_idx), int(matched.sum())
    detected = sum(sum(v) for v in by_type.values())
    n_events = len(labels)
    precision = true_alerts / n_alerts if n_alerts else 0.0
    recall = detected / n_events if n_events else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EventMetrics(
        alerts=n_alerts,
        true_alerts=true_alerts,
        events=n_events,
        detected=detected,
        precision=precision,
        recall=recall,
        f1=f1,
        false_alarms_per_symbol_day=(n_alerts - true_alerts) / max(symbol_days, 1),
        mean_delay_minutes=float(np.mean(delays)) if delays else float("nan"),
        recall_by_type={k: float(np.mean(v)) for k, v in by_type.items()},
    )
