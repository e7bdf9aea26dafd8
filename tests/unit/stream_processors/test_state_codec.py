"""The batch engine's binary state records: exact round trip, and restarts that change nothing."""

from __future__ import annotations

import json
import random
import struct
import sys
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processors.alignment import ACCEPTED, MarketAligner, Released
from stream_processors.state_codec import (
    StateCodecError,
    decode_slot,
    encode_profile,
    encode_slot,
    read_profile,
    read_slot,
)
from stream_processors.state_log import _slots_from, dirty_records
from tickwatch.features import compute_features_batch

sys.path.insert(0, str(Path(__file__).parents[1] / "tickwatch"))
from test_features import make_bars  # noqa: E402

SYMBOLS = ("AAA", "BBB", "VOO")


def _changelog_restart(old: MarketAligner, log: dict[bytes, bytes]) -> MarketAligner:
    """A new aligner from the compacted changelog alone (plus the market-returns topic)."""
    new = MarketAligner("VOO", old.beta_window, allowed_lateness_s=120)
    new.load(_slots_from(log))
    new.add_market_returns((t, *m) for t, m in old.market_returns.items())
    return new


def _run(bars: list, restart_every: int, seed: int) -> Released:
    rnd = random.Random(seed)
    aligner = MarketAligner("VOO", 60, allowed_lateness_s=120)
    log: dict[bytes, bytes] = {}
    out = Released()
    i, offset = 0, 0
    while i < len(bars):
        n = rnd.randint(1, 60)
        touched = set()
        for bar in bars[i : i + n]:
            slot = aligner.slot(bar.symbol)
            if aligner.offer(slot, bar.symbol, bar, 0, offset) == ACCEPTED:
                touched.add(bar.symbol)
            offset += 1
        aligner.release(touched | aligner.waiting, out)
        log.update((key, value) for _, key, value in dirty_records(aligner.slots, aligner.dirty))
        i += n
        if restart_every and rnd.random() < 1 / restart_every:
            aligner = _changelog_restart(aligner, log)
    aligner.lateness_s, aligner.lateness_ms = 0.0, 0
    aligner.release(aligner.waiting, out)
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), restart_every=st.sampled_from([0, 2, 8]))
def test_restarts_from_the_binary_changelog_equal_the_batch_features(
    seed: int, restart_every: int
) -> None:
    bars = sorted(
        make_bars(seed, symbols=SYMBOLS, days=3, minutes=50, drop=0.1),
        key=lambda b: (b.start_ms, b.symbol),
    )
    out = _run(bars, restart_every, seed)
    got = {(r.symbol, r.bar_start_ms): (r.features, r.warm) for r in out.rows}
    want = {(b.symbol, b.start_ms): (f, w) for b, f, w in compute_features_batch(bars)}
    assert got == want
    assert len(out.rows) == len(want)


def test_slot_round_trip_is_exact_including_pending_bars() -> None:
    bars = make_bars(7, symbols=("AAA",), days=2, minutes=70, drop=0.0)
    aligner = MarketAligner("VOO", 30, 120)
    slot = aligner.slot("AAA")
    for i, bar in enumerate(bars):
        aligner.offer(slot, "AAA", bar, 3, i)
    aligner.release(["AAA"], Released())  # no market bars: everything but waits
    assert slot.pending  # bars waiting for their market minute travel in the record too
    back = decode_slot("AAA", encode_slot(slot))
    core = slot.state.to_dict()
    del core["tod"]
    back_core = back.state.to_dict()
    del back_core["tod"]
    assert back_core == core
    assert (back.partition, back.offset) == (3, len(bars) - 1)
    assert list(back.pending) == list(slot.pending)
    assert list(back.recent) == list(slot.recent)
    assert back.state.beta_window == 30


def test_truncated_or_foreign_records_are_refused() -> None:
    aligner = MarketAligner("VOO", 60, 120)
    slot = aligner.slot("AAA")
    aligner.offer(slot, "AAA", make_bars(1, symbols=("AAA",), days=1, minutes=1)[0], 0, 0)
    data = encode_slot(slot)
    with pytest.raises(StateCodecError, match="truncated"):
        decode_slot("AAA", data[:-3])
    with pytest.raises(StateCodecError, match="version"):
        decode_slot("AAA", b'{"json": "state"}')


def test_faust_readers_tell_binary_profiles_from_legacy_json() -> None:
    # a log volume whose first little-endian byte is "[": still binary, not a JSON list
    odd = struct.unpack("<d", b"[\x00\x00\x00\x00\x00\xf0?")[0]
    slot = MarketAligner("VOO", 60, allowed_lateness_s=120).new_slot()
    slot.state.tod[570] = array("d", [odd, 7.25])
    binary = encode_profile(slot, 570)
    assert binary[:1] == b"["
    assert list(read_profile(binary)) == [odd, 7.25]
    assert list(read_profile(json.dumps([odd, 7.25]).encode())) == [odd, 7.25]
    assert list(read_profile(b"")) == []
    with pytest.raises(StateCodecError):
        read_slot("AAA", b"\x09not a state record")
