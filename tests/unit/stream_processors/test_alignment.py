"""The streaming path (MarketAligner) against compute_features_batch, on interleaved partitions."""

from __future__ import annotations

import base64
import json
import random
import sys
from array import array
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processors.alignment import (
    ACCEPTED,
    DUPLICATE,
    OUT_OF_ORDER,
    REPLAYED,
    MarketAligner,
    Released,
    Slot,
)
from stream_processors.state_codec import encode_profile, encode_slot, read_profile, read_slot
from tickwatch.features import PERSISTED_WINDOWS, compute_features_batch

sys.path.insert(0, str(Path(__file__).parents[1] / "tickwatch"))
from test_features import make_bars  # noqa: E402

SYMBOLS = ("AAA", "BBB", "CCC", "VOO")
_RESTARTS = 0


def partition_of(symbol: str, partitions: int) -> int:
    return sum(map(ord, symbol)) % partitions


def interleave(bars: list, partitions: int, rnd: random.Random) -> list[tuple[int, int, object]]:
    """(partition, offset, bar): per-partition order kept, partitions consumed at random speeds."""
    queues: dict[int, list] = {}
    for bar in bars:
        queues.setdefault(partition_of(bar.symbol, partitions), []).append(bar)
    pos = dict.fromkeys(queues, 0)
    out = []
    while any(pos[p] < len(q) for p, q in queues.items()):
        p = rnd.choice([p for p, q in queues.items() if pos[p] < len(q)])
        for _ in range(rnd.randint(1, 40)):
            if pos[p] < len(queues[p]):
                out.append((p, pos[p], queues[p][pos[p]]))
                pos[p] += 1
    return out


def run_stream(events: list, beta_window: int = 60, restart_every: int = 0) -> Released:
    """Feed events in batches; optionally persist and reload every slot (a restart)."""
    aligner = MarketAligner("VOO", beta_window, allowed_lateness_s=120)
    out = Released()
    for i in range(0, len(events), 25):
        touched = set()
        for partition, offset, bar in events[i : i + 25]:
            slot = aligner.slots.setdefault(bar.symbol, aligner.new_slot())
            if aligner.offer(slot, bar.symbol, bar, partition, offset) == ACCEPTED:
                touched.add(bar.symbol)
        aligner.release(touched | set(aligner.waiting_symbols()), out)
        if restart_every and i % restart_every == 0:
            aligner = _restarted(aligner)
    # end of stream: bars whose market minute never came wait for the stall timeout; let it pass
    aligner.lateness_s, aligner.lateness_ms = 0.0, 0
    aligner.release(aligner.waiting_symbols(), out)
    assert not aligner.waiting_symbols()
    return out


def _legacy_snapshot(slot: Slot) -> bytes:
    """A slot's `symbol-state` value as Faust workers before the binary records wrote it."""
    core = slot.state.to_dict()
    del core["tod"]
    for key in PERSISTED_WINDOWS:
        core[key] = base64.b64encode(array("d", core[key]).tobytes()).decode()
    core.update(
        partition=slot.partition,
        offset=slot.offset,
        recent=list(slot.recent),
        pending=[list(b) for b in slot.pending],
    )
    return json.dumps(core).encode()


def _restarted(old: MarketAligner) -> MarketAligner:
    """The aligner a restarted Faust worker rebuilds from its tables: binary records, or (every
    other restart) the JSON snapshots earlier versions wrote, both read by its readers."""
    global _RESTARTS
    _RESTARTS += 1
    legacy = _RESTARTS % 2 == 0
    new = MarketAligner("VOO", old.beta_window, allowed_lateness_s=120)
    slots = {}
    for symbol, slot in old.slots.items():
        value = _legacy_snapshot(slot) if legacy else encode_slot(slot)
        slots[symbol] = read_slot(symbol, value)
        for m in slot.state.tod:
            profile = (
                json.dumps(list(slot.state.tod[m])).encode() if legacy else encode_profile(slot, m)
            )
            slots[symbol].state.tod[m] = read_profile(profile)
    new.load(slots)
    new.add_market_returns((t, *m) for t, m in old.market_returns.items())  # the topic holds these
    return new


def by_key(rows: list) -> dict:
    return {(r.symbol, r.bar_start_ms): (r.features, r.warm) for r in rows}


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    partitions=st.integers(1, 6),
    restart=st.sampled_from([0, 50, 200]),
)
def test_stream_equals_batch_whatever_the_interleaving(
    seed: int, partitions: int, restart: int
) -> None:
    bars = make_bars(seed, symbols=SYMBOLS, days=2, minutes=70, drop=0.1)
    events = interleave(bars, partitions, random.Random(seed))
    out = run_stream(events, restart_every=restart)
    want = {(b.symbol, b.start_ms): (f, w) for b, f, w in compute_features_batch(bars)}
    assert by_key(out.rows) == want
    assert len(out.rows) == len(want)
    assert [start for start, *_ in out.market] == sorted(
        b.start_ms for b in bars if b.symbol == "VOO"
    )


def test_missing_market_minute_is_released_once_the_market_moves_on() -> None:
    bars = make_bars(4, symbols=SYMBOLS, days=1, minutes=30, drop=0.0)
    gap = bars[40].start_ms
    bars = [b for b in bars if not (b.symbol == "VOO" and b.start_ms == gap)]
    others = [(0, i, b) for i, b in enumerate(b for b in bars if b.symbol != "VOO")]
    market = [(1, i, b) for i, b in enumerate(b for b in bars if b.symbol == "VOO")]
    out = run_stream(others + market)  # every other symbol first: they all wait for the market
    want = {(b.symbol, b.start_ms): (f, w) for b, f, w in compute_features_batch(bars)}
    assert by_key(out.rows) == want


def test_verdicts_duplicate_out_of_order_replayed() -> None:
    bars = [b for b in make_bars(5, symbols=("VOO",), days=1, minutes=50, drop=0.0)]
    aligner = MarketAligner("VOO", 60, 120)
    slot = aligner.new_slot()
    aligner.slots["VOO"] = slot
    verdicts = [aligner.offer(slot, "VOO", b, 0, i) for i, b in enumerate(bars)]
    assert set(verdicts) == {ACCEPTED}
    assert aligner.offer(slot, "VOO", bars[-1], 0, 100) == DUPLICATE
    assert aligner.offer(slot, "VOO", bars[2], 0, 101) == OUT_OF_ORDER  # older than 32 starts
    assert aligner.offer(slot, "VOO", bars[-1], 0, 10) == REPLAYED  # offset already seen
    out = Released()
    aligner.release(["VOO"], out)
    assert len(out.rows) == len(bars) and not slot.pending
