"""Binary changelog records of the batch features engine: a symbol's Slot, and its minute profiles.

The JSON snapshots of the Faust tables cost about 40 us a symbol (dicts, base64, json), which
alone would cap a worker near 24k bars/s; these records are a fixed header plus the float
windows as raw float64, exact and about 10x cheaper. Keys: `s|SYMBOL` for the slot and
`p|SYMBOL|MINUTE` for one minute-of-day volume profile, in one compacted topic.
"""

from __future__ import annotations

import struct
import time
from array import array
from collections import deque
from functools import lru_cache

from stream_processors.alignment import RECENT_STARTS, Slot
from tickwatch.features import TOD_DAYS, Bar, SymbolState

VERSION = 1
# version, last_start_ms, last_close, last_day, bars_seen, unchanged_run, partition, offset,
# beta_window, the lengths of the seven windows, number of recent starts, number of pending bars
_HEADER = struct.Struct("<BqdiiiiqH7HBH")
_PENDING = struct.Struct("<q6dq")  # start_ms, open, high, low, close, volume, vwap, transactions
_WINDOWS = (
    "returns",
    "log_volumes",
    "log_transactions",
    "ranges",
    "pair_r",
    "pair_m",
    "residuals",
)


class StateCodecError(ValueError):
    """A changelog record this version cannot read."""


def slot_key(symbol: str) -> bytes:
    return f"s|{symbol}".encode()


def profile_key(symbol: str, minute: int) -> bytes:
    return f"p|{symbol}|{minute}".encode()


def encode_slot(slot: Slot) -> bytes:
    """The slot without its minute profiles (see encode_profile)."""
    st = slot.state
    windows = [getattr(st, name) for name in _WINDOWS]
    header = _HEADER.pack(
        VERSION,
        st.last_start_ms,
        st.last_close,
        st.last_day,
        st.bars_seen,
        st.unchanged_run,
        slot.partition,
        slot.offset,
        st.pair_m.maxlen or 0,
        *map(len, windows),
        len(slot.recent),
        len(slot.pending),
    )
    floats = (*windows[0], *windows[1], *windows[2], *windows[3], *windows[4], *windows[5])
    floats += tuple(windows[6])
    parts = [header, _doubles(len(floats)).pack(*floats), array("q", slot.recent).tobytes()]
    parts += [_PENDING.pack(*bar[1:]) for bar in slot.pending]
    return b"".join(parts)


def decode_slot(symbol: str, data: bytes) -> Slot:
    """The Slot `encode_slot` wrote (its profiles start empty; add them with decode_profile)."""
    if not data or data[0] != VERSION:
        raise StateCodecError(f"{symbol}: unknown state record version {data[:1]!r}")
    fields = _HEADER.unpack_from(data)
    last_start, last_close, last_day, bars_seen, unchanged, partition, offset, beta = fields[1:9]
    lengths, n_recent, n_pending = fields[9:16], fields[16], fields[17]
    pos = _HEADER.size
    if len(data) < pos + 8 * sum(lengths):
        raise StateCodecError(f"{symbol}: state record of {len(data)} bytes is truncated")
    floats = _doubles(sum(lengths)).unpack_from(data, pos)
    pos += 8 * sum(lengths)
    recent = array("q")
    recent.frombytes(data[pos : pos + 8 * n_recent])
    pos += 8 * n_recent
    if len(data) != pos + _PENDING.size * n_pending:
        raise StateCodecError(f"{symbol}: state record of {len(data)} bytes is truncated")
    st = SymbolState(beta_window=beta)
    st.last_start_ms, st.last_close, st.last_day = last_start, last_close, last_day
    st.bars_seen, st.unchanged_run = bars_seen, unchanged
    start = 0
    for name, n in zip(_WINDOWS, lengths, strict=True):
        getattr(st, name).extend(floats[start : start + n])
        start += n
    pending = deque(
        Bar(symbol, *_PENDING.unpack_from(data, pos + i * _PENDING.size)) for i in range(n_pending)
    )
    return Slot(
        state=st,
        partition=partition,
        offset=offset,
        pending=pending,
        recent=deque(recent, maxlen=RECENT_STARTS),
        waiting_since=time.monotonic(),
    )


@lru_cache(maxsize=512)
def _doubles(n: int) -> struct.Struct:
    """Packer of n little-endian float64 (twice as fast as array('d', iterable))."""
    return struct.Struct(f"<{n}d")


def encode_profile(slot: Slot, minute: int) -> bytes:
    return array("d", slot.state.tod.get(minute, ())).tobytes()


def decode_profile(data: bytes) -> deque[float]:
    values = array("d")
    values.frombytes(data)
    return deque(values, maxlen=TOD_DAYS)
