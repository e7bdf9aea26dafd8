"""Feature frames for training, backtest and scoring: model inputs, labels, sequences, splits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from detection.detector import INPUTS
from tickwatch.features import MODEL_FEATURES, compute_features_batch, session_slot
from tickwatch.schemas import MINUTE_MS, FeatureVector
from tickwatch.settings import BETA_WINDOW, MARKET_SYMBOL

# Rolling features stay disturbed for a while after an anomaly: keep those rows out of training and
# threshold calibration too.
LABEL_TAIL_MINUTES = 20
CONTEXT = ("symbol", "bar_start_ms", "close", "volume", "warm")
# what a frame holds beside its context: the models' features and the detector's inputs
COLUMNS = tuple(dict.fromkeys((*MODEL_FEATURES, *INPUTS, "log_return")))


def frame_from_bars(
    bars: Iterable[Any], market_symbol: str = MARKET_SYMBOL, beta_window: int = BETA_WINDOW
) -> pd.DataFrame:
    """One row per bar: context columns and MODEL_FEATURES, computed by tickwatch.features."""
    rows = [
        (bar.symbol, int(bar.start_ms), float(bar.close), float(bar.volume), warm)
        + tuple(feats[k] for k in COLUMNS)
        for bar, feats, warm in compute_features_batch(bars, market_symbol, beta_window)
    ]
    return training_frame(pd.DataFrame(rows, columns=[*CONTEXT, *COLUMNS]))


def training_frame(features: pd.DataFrame) -> pd.DataFrame:
    """The frame training reads, from rows of computed features (the batch functions' or the
    offline store's): CONTEXT and COLUMNS as they were computed, sorted by symbol then time,
    `session_open` (the feature) as a bool."""
    df = features[[*CONTEXT, *COLUMNS]].sort_values(["symbol", "bar_start_ms"])
    df = df.reset_index(drop=True).astype({"warm": bool})
    df["session_open"] = df["session_open"].to_numpy() > 0
    return df


def minute_of_day(ts_ms: np.ndarray | pd.Series) -> np.ndarray:
    """The minute of the exchange day of each bar start."""
    return np.array([session_slot(int(t))[1] for t in np.asarray(ts_ms)], dtype=np.int64)


def input_windows(df: pd.DataFrame, length: int) -> np.ndarray:
    """Per row the last `length` detector-input rows of its symbol (zero-padded in front)."""
    return _windows(df[list(INPUTS)].to_numpy(dtype=np.float32), df["symbol"].to_numpy(), length)


def stream_order(df: pd.DataFrame) -> np.ndarray:
    """Row indexes of a (symbol, time)-sorted frame in the order the stream sees them."""
    return np.lexsort((df["symbol"].to_numpy(), df["bar_start_ms"].to_numpy()))


def vectors_from_frame(df: pd.DataFrame) -> list[FeatureVector]:
    """FeatureVectors of a feature frame, in stream order (time, then symbol)."""
    cols = list(COLUMNS)
    values = df[cols].to_numpy(dtype=np.float64)
    sym, ts = df["symbol"].to_numpy(), df["bar_start_ms"].to_numpy()
    close, vol, warm = df["close"].to_numpy(), df["volume"].to_numpy(), df["warm"].to_numpy()
    return [
        FeatureVector.model_construct(
            symbol=str(sym[i]),
            bar_start_ms=int(ts[i]),
            close=float(close[i]),
            volume=float(vol[i]),
            features=dict(zip(cols, values[i].tolist(), strict=True)),
            warm=bool(warm[i]),
        )
        for i in stream_order(df)
    ]


def label_mask(df: pd.DataFrame, labels: pd.DataFrame, tail_minutes: int = 0) -> np.ndarray:
    """True for rows inside a labelled anomaly (extended by `tail_minutes` after its end)."""
    mask = np.zeros(len(df), dtype=bool)
    if labels is None or labels.empty:
        return mask
    sym = df["symbol"].to_numpy()
    ts = df["bar_start_ms"].to_numpy()
    for lab in labels.itertuples(index=False):
        end = int(lab.end) + tail_minutes * MINUTE_MS
        mask |= (sym == lab.symbol) & (ts >= int(lab.start)) & (ts <= end)
    return mask


def trading_day(ts_ms: np.ndarray | pd.Series) -> np.ndarray:
    """The New York trading date (yyyymmdd) of each bar start."""
    return np.array([session_slot(int(t))[0] for t in np.asarray(ts_ms)], dtype=np.int64)


def split_by_day(df: pd.DataFrame, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row masks: the last trading days go to validation (no look-ahead),
    about `validation_fraction` of the rows; where whole days cannot split the rows near that
    (one session, or a partial first one), the history is split in time instead."""
    days = trading_day(df["bar_start_ms"])
    ts = df["bar_start_ms"].to_numpy()
    unique = np.unique(days)
    if len(unique) >= 2:
        share = np.array([(days < d).mean() for d in unique[1:]])  # train share per day cut
        ok = np.flatnonzero((share >= 0.5) & (share <= 0.9))
        if len(ok):
            best = ok[np.argmin(np.abs(share[ok] - (1 - validation_fraction)))]
            cut = unique[1:][best]
            return days < cut, days >= cut
    if len(np.unique(ts)) < 2:
        raise ValueError("need bars at two times at least to split training from validation")
    cut_ts = np.quantile(ts, 1 - validation_fraction)
    return ts < cut_ts, ts >= cut_ts


def model_matrix(df: pd.DataFrame) -> np.ndarray:
    """The MODEL_FEATURES columns as float32."""
    return df[list(MODEL_FEATURES)].to_numpy(dtype=np.float32)


def sequences(df: pd.DataFrame, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows, valid): per row the last `length` vectors of its symbol ending at that row.

    `df` must be sorted by symbol then time; rows with fewer predecessors are zero-padded at the
    front and marked invalid.
    """
    sym = df["symbol"].to_numpy()
    out = _windows(model_matrix(df), sym, length)
    valid = np.zeros(len(df), dtype=bool)
    starts = np.r_[0, np.flatnonzero(sym[1:] != sym[:-1]) + 1, len(df)]
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        valid[a + length - 1 : b] = True
    return out, valid


def _windows(x: np.ndarray, sym: np.ndarray, length: int) -> np.ndarray:
    """Per row the last `length` rows of its symbol block, zero-padded in front."""
    n, f = x.shape
    out = np.zeros((n, length, f), dtype=np.float32)
    starts = np.r_[0, np.flatnonzero(sym[1:] != sym[:-1]) + 1, n]
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        padded = np.concatenate([np.zeros((length - 1, f), dtype=np.float32), x[a:b]])
        out[a:b] = np.lib.stride_tricks.sliding_window_view(padded, (length, f))[:, 0]
    return out
