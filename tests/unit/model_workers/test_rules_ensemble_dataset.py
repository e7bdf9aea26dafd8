"""Rule baselines, the ensemble decision and severity, sequences and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detection.rules import fired_rules, prototype_rule
from model_workers import dataset
from tickwatch.features import MODEL_FEATURES

M = 60_000
T0 = 1_741_012_200_000  # 2025-03-03 09:30 New York


def test_prototype_rule_fires_on_3x_volume_or_a_5pct_move():
    volume = [100.0] * 25
    volume[22] = 301.0
    close = [10.0] * 25
    close[24] = 10.6
    bars = pd.DataFrame({"symbol": "A", "volume": volume, "close": close})
    assert list(np.flatnonzero(prototype_rule(bars))) == [22, 24]


def test_fired_rules_names_what_tripped():
    assert fired_rules({"log_return": 0.06, "return_z": 9.0, "volume_z_20": 1.0}) == [
        "move_over_5pct",
        "return_z_over_4",
    ]
    assert fired_rules({"log_return": 0.0, "return_z": 0.5, "volume_z_20": 0.2}) == []


def test_sequences_are_per_symbol_windows_ending_at_each_row():
    df = pd.DataFrame(
        {
            "symbol": ["A"] * 4 + ["B"] * 3,
            "bar_start_ms": [T0 + i * M for i in (0, 1, 2, 3, 0, 1, 2)],
        }
    )
    for i, k in enumerate(MODEL_FEATURES):
        df[k] = np.arange(7) * 10 + i
    windows, valid = dataset.sequences(df, 3)
    assert list(valid) == [False, False, True, True, False, False, True]
    assert list(windows[3, :, 0]) == [10, 20, 30] and list(windows[6, :, 0]) == [40, 50, 60]


def test_split_keeps_the_last_days_for_validation():
    day = 86_400_000
    df = pd.DataFrame(
        {"symbol": "A", "bar_start_ms": [T0, T0 + M, T0 + day, T0 + 2 * day, T0 + 3 * day]}
    )
    train, val = dataset.split_by_day(df, 0.5)
    assert list(val) == [False, False, False, True, True] and list(train) == list(~val)
