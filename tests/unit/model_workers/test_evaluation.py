"""Event-level evaluation and cooldown: alerts from flags, matching labels, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.scorer import Cooldown
from model_workers.evaluation import alerts_from_flags, evaluate_alerts

M = 60_000
T0 = 1_741_012_200_000  # 2025-03-03 09:30 New York


def test_an_ongoing_run_of_flags_gives_one_alert_and_a_gap_starts_a_new_one():
    ts = T0 + np.arange(20) * M
    flags = np.zeros(20, bool)
    flags[[2, 3, 4, 5, 8, 15]] = True  # 8 is within 5 min of 5; 15 is 7 min after 8
    alerts = alerts_from_flags(np.array(["A"] * 20), ts, flags, cooldown_minutes=5)
    assert list(np.flatnonzero(alerts)) == [2, 15]


def test_worker_cooldown_matches_the_backtest_alerts():
    rng = np.random.default_rng(3)
    flags = rng.random(400) < 0.1
    ts = T0 + np.arange(400) * M
    cool = Cooldown(5)
    worker = [bool(f and cool.admit("A", int(t))) for f, t in zip(flags, ts, strict=True)]
    assert worker == list(alerts_from_flags(np.array(["A"] * 400), ts, flags, 5))


def test_metrics_count_detections_false_alarms_and_delay():
    frame = pd.DataFrame(
        {
            "symbol": ["A"] * 100 + ["B"] * 100,
            "bar_start_ms": np.r_[T0 + np.arange(100) * M, T0 + np.arange(100) * M],
        }
    )
    labels = pd.DataFrame(
        {
            "symbol": ["A", "A", "B"],
            "start": [T0 + 10 * M, T0 + 50 * M, T0 + 30 * M],
            "end": [T0 + 12 * M, T0 + 50 * M, T0 + 40 * M],
            "type": ["price_jump", "price_jump", "decoupling"],
        }
    )
    alerts = np.zeros(200, bool)
    alerts[[11, 17, 80, 100 + 44]] = True  # A@11 hit (delay 1), A@17 within tail, A@80 false,
    # B@44 within 5 min after the end (delay 14)
    m = evaluate_alerts(frame, alerts, labels, symbol_days=2)
    assert (m.alerts, m.true_alerts, m.events, m.detected) == (4, 3, 3, 2)
    assert m.precision == pytest.approx(0.75) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))
    assert m.false_alarms_per_symbol_day == pytest.approx(0.5)
    assert m.mean_delay_minutes == pytest.approx((1 + 14) / 2)
    assert m.recall_by_type == {"price_jump": 0.5, "decoupling": 1.0}


def test_no_alerts_gives_zero_scores_not_errors():
    frame = pd.DataFrame({"symbol": ["A"], "bar_start_ms": [T0]})
    labels = pd.DataFrame({"symbol": ["A"], "start": [T0], "end": [T0], "type": ["x"]})
    m = evaluate_alerts(frame, np.zeros(1, bool), labels, 1)
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
