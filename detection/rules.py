"""Rule baselines: the prototype's rule, a rolling z-score rule, the rules events report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PROTOTYPE_VOLUME_MULTIPLE = 3.0
PROTOTYPE_VOLUME_BARS = 20  # the previous bars whose mean volume the prototype compares with
PROTOTYPE_MOVE = 0.05
ZSCORE_LIMIT = 4.0
BIG_MOVE_LOG = math.log1p(PROTOTYPE_MOVE)
# the names events report, from the limits above: move_over_5pct, return_z_over_4, ...
BIG_MOVE_RULE = f"move_over_{PROTOTYPE_MOVE * 100:g}pct"
RETURN_Z_RULE = f"return_z_over_{ZSCORE_LIMIT:g}"
VOLUME_Z_RULE = f"volume_z_over_{ZSCORE_LIMIT:g}"


def prototype_rule(bars: pd.DataFrame) -> np.ndarray:
    """The prototype: volume above 3x the mean of the previous 20 bars, or a 1-bar move above 5%.

    `bars` has symbol, close, volume in time order per symbol; returns a bool per row.
    """
    g = bars.groupby("symbol", sort=False)
    n = PROTOTYPE_VOLUME_BARS
    prev_mean = g["volume"].transform(lambda v: v.shift().rolling(n, min_periods=n).mean())
    move = g["close"].pct_change().abs()
    return (
        ((bars["volume"] > PROTOTYPE_VOLUME_MULTIPLE * prev_mean) | (move > PROTOTYPE_MOVE))
        .fillna(False)
        .to_numpy(dtype=bool)
    )


def zscore_rule(features: pd.DataFrame, limit: float = ZSCORE_LIMIT) -> np.ndarray:
    """Rolling z-score baseline: |return z| or volume z (previous 20 bars) above `limit`."""
    return ((features["return_z"].abs() > limit) | (features["volume_z_20"] > limit)).to_numpy()


def fired_rules(feats: dict[str, float]) -> list[str]:
    """The rule baselines one feature vector trips (reported beside the models' verdict)."""
    out = []
    if abs(feats.get("log_return", 0.0)) > BIG_MOVE_LOG:
        out.append(BIG_MOVE_RULE)
    if abs(feats.get("return_z", 0.0)) > ZSCORE_LIMIT:
        out.append(RETURN_Z_RULE)
    if feats.get("volume_z_20", 0.0) > ZSCORE_LIMIT:
        out.append(VOLUME_Z_RULE)
    return out
