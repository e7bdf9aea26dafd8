"""The CSV reader takes symbols as markets write them and tolerates float noise in prices."""

from __future__ import annotations

from tickwatch.bar_files import read_bars_csv

HEADER = "symbol,timestamp,open,high,low,close,volume\n"


def test_market_symbols_are_accepted(tmp_path) -> None:
    rows = [
        f"{s},2024-01-02T14:3{i}:00Z,1.1,1.2,1.0,1.1,5"
        for i, s in enumerate(["BRK.A", "X:BTCUSD", "6EH4", "C:EURUSD", "I:SPX"])
    ]
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    bars, refused = read_bars_csv(path)
    assert refused == []
    assert [b.symbol for b in bars] == ["BRK.A", "X:BTCUSD", "6EH4", "C:EURUSD", "I:SPX"]


def test_float_noise_is_clamped_but_real_errors_refused(tmp_path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        HEADER
        + "AAPL,2024-01-02T14:30:00Z,10.0,10.5,9.9,9.899999999999999,5\n"  # close < low by 1e-15
        + "AAPL,2024-01-02T14:31:00Z,10.0,10.5,9.9,9.5,5\n"  # close far below low
    )
    bars, refused = read_bars_csv(path)
    assert len(bars) == 1 and bars[0].low == bars[0].close
    assert [r.line for r in refused] == [3] and "OHLC" in refused[0].reason


def test_parquet_reads_like_csv_and_keeps_its_timestamp_kind(tmp_path) -> None:
    import pandas as pd

    from tickwatch.bar_files import is_iso_file, read_bars

    rows = pd.DataFrame(
        {
            "symbol": ["6EH4", "6EH4"],
            "timestamp": pd.to_datetime(["2024-01-02T14:30:00Z", "2024-01-02T14:31:00Z"]),
            "open": [1.1, 1.1],
            "high": [1.2, 1.2],
            "low": [1.0, 1.3],  # second row: low above high, refused
            "close": [1.1, 1.1],
            "volume": [5.0, 5.0],
        }
    )
    path = tmp_path / "bars.parquet"
    rows.to_parquet(path)
    bars, refused = read_bars(path)
    assert [b.symbol for b in bars] == ["6EH4"] and bars[0].start_ms == 1704205800000
    assert [r.line for r in refused] == [3]
    assert is_iso_file(path)
    assert list(tmp_path.iterdir()) == [path]  # nothing written beside the input
