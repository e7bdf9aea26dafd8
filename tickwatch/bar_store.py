"""Parquet store of minute bars (one file per symbol per New York trading day) and labels.csv.

Writes merge with what is already stored and replace the file atomically, keyed by
(symbol, timestamp), so writing the same range twice stores every bar once.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from tickwatch.features import Bar
from tickwatch.schemas import AnomalyLabel, MinuteBar
from tickwatch.settings import Settings

NEW_YORK = ZoneInfo("America/New_York")
BAR_COLUMNS = [
    "symbol",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "transactions",
]
LABEL_COLUMNS = ["symbol", "start", "end", "type"]
_DTYPES = {
    "symbol": "object",
    "timestamp": "int64",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "vwap": "float64",
    "transactions": "int64",
}


def bars_root(settings: Settings) -> Path:
    """Where the bar Parquet files live: `data_dir/bars`."""
    return settings.data_dir / "bars"


def labels_path(settings: Settings) -> Path:
    """The injected-anomaly labels file: `data_dir/labels.csv`."""
    return settings.data_dir / "labels.csv"


def bars_to_frame(bars: Iterable[MinuteBar]) -> pd.DataFrame:
    """Bars as a DataFrame with BAR_COLUMNS (`timestamp` = bar start, Unix ms)."""
    rows = [
        (b.symbol, b.start_ms, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.transactions)
        for b in bars
    ]
    return pd.DataFrame(rows, columns=BAR_COLUMNS).astype(_DTYPES)


def bars_from_frame(frame: pd.DataFrame) -> list[Bar]:
    """The bars of a BAR_COLUMNS frame as the Bar tuples tickwatch.features reads."""
    return [
        Bar(str(s), int(t), float(o), float(h), float(lo), float(c), float(v), float(w), int(n))
        for s, t, o, h, lo, c, v, w, n in frame[BAR_COLUMNS].itertuples(index=False, name=None)
    ]


def labels_to_frame(labels: Iterable[AnomalyLabel]) -> pd.DataFrame:
    """Labels as a DataFrame: symbol, start, end (bar starts, inclusive, Unix ms), type."""
    rows = [(lb.symbol, lb.start_ms, lb.end_ms, lb.kind) for lb in labels]
    return pd.DataFrame(rows, columns=LABEL_COLUMNS).astype({"start": "int64", "end": "int64"})


def _day_of(ts_ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ts_ms, unit="ms", utc=True).dt.tz_convert(NEW_YORK).dt.date


def _replace_atomically(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def write_bars(root: Path, bars: Iterable[MinuteBar] | pd.DataFrame) -> int:
    """Merge bars into `root/<SYMBOL>/<YYYY-MM-DD>.parquet`; returns how many were new."""
    df = bars if isinstance(bars, pd.DataFrame) else bars_to_frame(bars)
    if df.empty:
        return 0
    df = df[BAR_COLUMNS].astype(_DTYPES)
    new = 0
    for (symbol, day), part in df.groupby([df["symbol"], _day_of(df["timestamp"])]):
        path = Path(root) / str(symbol) / f"{day:%Y-%m-%d}.parquet"
        old = pd.read_parquet(path) if path.exists() else None
        merged = part if old is None else pd.concat([old, part], ignore_index=True)
        merged = (
            merged.drop_duplicates("timestamp", keep="last")
            .sort_values("timestamp")
            .reset_index(drop=True)
        )
        before = 0 if old is None else len(old)
        new += len(merged) - before
        if old is None or not merged.equals(old.reset_index(drop=True)):
            _replace_atomically(merged, path)
    return new


def stored_timestamps(root: Path, symbol: str, day: dt.date) -> set[int]:
    """Bar starts already stored for one symbol-day."""
    path = Path(root) / symbol / f"{day:%Y-%m-%d}.parquet"
    if not path.exists():
        return set()
    return set(pd.read_parquet(path, columns=["timestamp"])["timestamp"].tolist())


def read_bars(
    root: Path,
    symbols: list[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> pd.DataFrame:
    """Stored bars with start in [start_ms, end_ms) (bounds optional), sorted by time, symbol."""
    root = Path(root)
    first = _day_of(pd.Series([start_ms]))[0] if start_ms is not None else None
    last = _day_of(pd.Series([end_ms]))[0] if end_ms is not None else None
    parts = []
    dirs = (
        [root / s for s in symbols] if symbols else sorted(p for p in root.glob("*") if p.is_dir())
    )
    for d in dirs:
        for path in sorted(d.glob("*.parquet")):
            day = dt.date.fromisoformat(path.stem)
            if (first and day < first) or (last and day > last):
                continue
            parts.append(pd.read_parquet(path))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})
    df = pd.concat(parts, ignore_index=True)
    if start_ms is not None:
        df = df[df["timestamp"] >= start_ms]
    if end_ms is not None:
        df = df[df["timestamp"] < end_ms]
    return df.sort_values(["timestamp", "symbol"]).reset_index(drop=True).astype(_DTYPES)


def write_labels(path: Path, labels: Iterable[AnomalyLabel] | pd.DataFrame) -> int:
    """Merge labels into the CSV at `path` (deduplicated); returns how many were new."""
    df = labels if isinstance(labels, pd.DataFrame) else labels_to_frame(labels)
    old = read_labels(path)
    merged = (
        pd.concat([old, df[LABEL_COLUMNS]], ignore_index=True)
        .drop_duplicates(LABEL_COLUMNS)
        .sort_values(["start", "symbol"])
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    merged.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return len(merged) - len(old)


def read_labels(path: Path) -> pd.DataFrame:
    """Labels from the CSV at `path` (empty frame if missing): symbol, start, end, type."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(
            {
                "symbol": pd.Series(dtype="object"),
                "start": pd.Series(dtype="int64"),
                "end": pd.Series(dtype="int64"),
                "type": pd.Series(dtype="object"),
            }
        )
    return pd.read_csv(path, dtype={"symbol": str, "type": str}).astype(
        {"start": "int64", "end": "int64"}
    )
