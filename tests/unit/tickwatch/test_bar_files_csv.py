"""The user CSV reader: ISO or Unix-ms timestamps, every bad row reported with its reason."""

from __future__ import annotations

from tickwatch.bar_files import read_bars_csv


def test_reads_valid_rows_and_reports_bad_ones(tmp_path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "symbol,timestamp,open,high,low,close,volume,vwap,transactions\n"
        "AAPL,2025-03-03T14:30:00Z,10,11,9,10.5,100,10.2,3\n"
        "AAPL,1741012260000,10.5,11,10,10.8,50,10.6,2\n"
        "AAPL,2025-03-03T14:32:00Z,10,9,11,10,100,10,1\n"  # high < low
        "MSFT,not-a-time,1,1,1,1,1,1,1\n"
        "AAPL,2025-03-03T14:33:30Z,10,11,9,10,1,10,1\n"  # not on a minute
        "AAPL,2025-03-03T14:34:00Z,nan,11,9,10,1,10,1\n"
    )
    bars, errors = read_bars_csv(path)
    assert [b.start_ms for b in bars] == [1741012200000, 1741012260000]
    assert bars[0].source == "csv" and bars[0].end_ms == 1741012260000
    assert [e.line for e in errors] == [4, 5, 6, 7]
    assert "OHLC inconsistent" in errors[0].reason
    assert "not-a-time" in errors[1].reason
    assert "minute boundary" in errors[2].reason
    assert "open" in errors[3].reason
