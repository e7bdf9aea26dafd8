"""Read a user's file of bars (CSV or Parquet: symbol, timestamp, OHLC, volume, vwap,
transactions), as the backtest, `tickwatch train --bars` and the replay server take them."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from tickwatch.schemas import DAY_MS, MINUTE_MS, MinuteBar, describe_error

log = logging.getLogger(__name__)
REQUIRED = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
FLOAT_NOISE = 1e-9  # relative: a low above the open/close by less than this is clamped, not refused


@dataclass(frozen=True)
class CsvRowError:
    """One refused CSV row: its line number, the raw text and why."""

    line: int
    raw: str
    reason: str


def typical_price(high: float, low: float, close: float) -> float:
    """(high + low + close) / 3: a bar's VWAP where its source gives none."""
    return (high + low + close) / 3


def parse_timestamp(text: str) -> int:
    """Unix ms from Unix ms digits or an ISO-8601 time (UTC unless an offset is given)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def read_bars_csv(path: Path) -> tuple[list[MinuteBar], list[CsvRowError]]:
    """Valid bars (source="csv", sorted by start then symbol) and the refused rows with reasons.

    Float noise in adjusted prices (a close below the low by 1e-16) is clamped, not refused; the
    number of clamped rows is logged."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        _check_columns(path, fields)
        return _validate(((reader.line_num, row) for row in reader), fields, path)


def read_bars(path: Path) -> tuple[list[MinuteBar], list[CsvRowError]]:
    """CSV (optionally .gz) or Parquet (by suffix) bars, validated like read_bars_csv; a Parquet
    row's "line" is its row number + 2 (as if it had a header line)."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        return read_bars_csv(path)
    df = pd.read_parquet(path)
    if "timestamp" in df and not pd.api.types.is_integer_dtype(df["timestamp"]):
        ts = pd.to_datetime(df["timestamp"], utc=True)
        df["timestamp"] = ts.astype("int64") // 1_000_000
    fields = [str(c) for c in df.columns]
    _check_columns(path, fields)
    records = df.astype(str).replace({"nan": "", "None": ""}).to_dict("records")
    return _validate(((i + 2, row) for i, row in enumerate(records)), fields, path)


def read_daily_closes(path: Path) -> list[MinuteBar]:
    """Daily bars from a wide table of closes (a date column, then one column per symbol, as
    price downloads often come): each bar runs from the previous close to its close, volume 1
    (no volume in such a table); a symbol's rows before its first close are left out."""
    wide = pd.read_csv(path)
    dates = pd.to_datetime(wide.iloc[:, 0], utc=True)
    out = []
    for symbol in wide.columns[1:]:
        close = wide[symbol].to_numpy(float)
        known = np.flatnonzero(np.isfinite(close) & (close > 0))
        for i, j in zip(known[:-1], known[1:], strict=True):
            o, c = float(close[i]), float(close[j])
            start = int(dates.iloc[j].value // 1_000_000)
            out.append(
                MinuteBar(
                    symbol=str(symbol),
                    start_ms=start,
                    end_ms=start + DAY_MS,
                    open=o,
                    high=max(o, c),
                    low=min(o, c),
                    close=c,
                    volume=1.0,
                    vwap=c,
                    transactions=1,
                    source="csv",
                )
            )
    return sorted(out, key=lambda b: (b.start_ms, b.symbol))


def _check_columns(path: Path, fields: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; need {', '.join(REQUIRED)}")


def _validate(
    rows: Iterable[tuple[int, dict[str, str]]], fields: list[str], path: Path
) -> tuple[list[MinuteBar], list[CsvRowError]]:
    bars: list[MinuteBar] = []
    errors: list[CsvRowError] = []
    clamped = 0
    for line, row in rows:
        raw = ",".join(str(row.get(c, "")) for c in fields)
        try:
            bar, was_clamped = _row_to_bar(row)
        except ValidationError as exc:
            errors.append(CsvRowError(line, raw, describe_error(MinuteBar, exc)))
        except (ValueError, TypeError) as exc:
            errors.append(CsvRowError(line, raw, str(exc)))
        else:
            bars.append(bar)
            clamped += was_clamped
    if clamped:
        log.warning("%s: %d rows clamped (low/high off by float noise only)", path, clamped)
    bars.sort(key=lambda b: (b.start_ms, b.symbol))
    return bars, errors


def is_iso_file(path: Path) -> bool:
    """True when the file writes its timestamps as ISO-8601 text (not Unix ms digits)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        ts = pd.read_parquet(path, columns=["timestamp"])["timestamp"]
        return not pd.api.types.is_integer_dtype(ts)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            return not (row.get("timestamp") or "").strip().lstrip("-").isdigit()
    return False


def _row_to_bar(row: dict[str, str]) -> tuple[MinuteBar, bool]:
    """The row's bar and whether its low/high were clamped."""
    start = parse_timestamp(row["timestamp"] or "")
    o, h, lo, c = (float(row[k]) for k in ("open", "high", "low", "close"))
    lo2, h2 = _clamp_noise(o, h, lo, c)
    clamped = (lo2, h2) != (lo, h)
    lo, h = lo2, h2
    vwap = float(row["vwap"]) if row.get("vwap") else typical_price(h, lo, c)
    tx = int(float(row["transactions"])) if row.get("transactions") else 0
    bar = MinuteBar(
        symbol=(row["symbol"] or "").strip(),
        start_ms=start,
        end_ms=start + MINUTE_MS,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=float(row["volume"]),
        vwap=vwap,
        transactions=tx,
        source="csv",
    )
    return bar, clamped


def _clamp_noise(o: float, h: float, lo: float, c: float) -> tuple[float, float]:
    """(low, high) widened to the open and close when they miss by float noise only."""
    top, bottom = max(o, c), min(o, c)
    if lo > bottom and lo - bottom <= FLOAT_NOISE * abs(bottom):
        lo = bottom
    if h < top and top - h <= FLOAT_NOISE * abs(top):
        h = top
    return lo, h


def read_labels_csv(path: Path) -> pd.DataFrame:
    """Labels CSV symbol,start,end,type (times ISO-8601 UTC or Unix ms) as a frame in Unix ms."""
    df = pd.read_csv(path, dtype=str)
    missing = {"symbol", "start", "end", "type"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; need symbol,start,end,type")
    return pd.DataFrame(
        {
            "symbol": df["symbol"].str.strip(),
            "start": df["start"].map(parse_timestamp).astype("int64"),
            "end": df["end"].map(parse_timestamp).astype("int64"),
            "type": df["type"].str.strip(),
        }
    )
