"""The Parquet bar store and labels.csv: idempotent merges, range reads."""

from __future__ import annotations

from producers.market_sim import simulate
from tickwatch.bar_store import (
    bars_to_frame,
    labels_to_frame,
    read_bars,
    read_labels,
    write_bars,
    write_labels,
)


def test_write_twice_stores_once_and_reads_ranges(tmp_path) -> None:
    sim = simulate(["AAPL", "VOO"], days=2, seed=1)
    root = tmp_path / "bars"
    assert write_bars(root, sim.bars[:500]) == 500
    assert write_bars(root, sim.bars) == len(sim.bars) - 500
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    assert write_bars(root, sim.bars) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")} == mtimes  # nothing rewritten
    assert len(mtimes) == 4  # 2 symbols x 2 days
    everything = read_bars(root)
    assert everything.equals(bars_to_frame(sim.bars))
    mid = sim.bars[390].start_ms
    part = read_bars(root, symbols=["VOO"], start_ms=mid, end_ms=mid + 10 * 60_000)
    assert len(part) == 10 and set(part["symbol"]) == {"VOO"}
    assert read_bars(tmp_path / "nothing").empty


def test_labels_merge_without_duplicates(tmp_path) -> None:
    sim = simulate(["AAPL", "MSFT"], days=3, seed=2)
    path = tmp_path / "labels.csv"
    assert write_labels(path, sim.labels) == len(sim.labels)
    assert write_labels(path, sim.labels[:3]) == 0
    assert (
        read_labels(path)
        .reset_index(drop=True)
        .equals(labels_to_frame(sim.labels).reset_index(drop=True))
    )
