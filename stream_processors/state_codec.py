"""Binary changelog records of the batch features engine: a symbol's Slot, and its minute profiles.

The JSON snapshots of the Faust tables cost about 40 us a symbol (dicts, base64, json), which
alone would cap a worker near 24k bars/s; these records are a fixed header plus the float
windows as raw little-endian float64 (SymbolState keeps them as arrays: a memory copy), exact
and about 10x cheaper. Keys: `s|SYMBOL` for the slot and `p|SYMBOL|MINUTE` for one minute-of-day
volume profile, in one compacted topic. The Faust engine's tables hold the same records under
their own keys (`read_slot` and `read_profile` also read the JSON snapshots its earlier
versions wrote).
"""

from __future__ import annotations

import json
import struct
import sys
import time
from array import array
from collections import deque
from operator import attrgetter

from stream_processors.alignment import RECENT_STARTS, Slot
from tickwatch.features import PERSISTED_WINDOWS, TOD_DAYS, Bar, SymbolState

VERSION = 1
# version, last_start_ms, last_close, last_day, bars_seen, unchanged_run, partition, offset,
# beta_window, the lengths of the seven windows, number of recent starts, number of pending bars
_HEADER = struct.Struct("<BqdiiiiqH7HBH")
_PENDING = struct.Struct("<q6dq")  # start_ms, open, high, low, close, volume, vwap, transactions


_windows = attrgetter(*PERSISTED_WINDOWS)


class StateCodecError(ValueError):
    """A changelog record this version cannot read."""


def slot_key(symbol: str) -> bytes:
    return f"s|{symbol}".encode()


def profile_key(symbol: str, minute: int) -> bytes:
    return f"p|{symbol}|{minute}".encode()


def encode_slot(slot: Slot) -> bytes:
    """The slot without its minute profiles (see encode_profile)."""
    st = slot.state
    windows = _windows(st)
    lengths = tuple(map(len, windows))
    header = _HEADER.pack(
        VERSION,
        st.last_start_ms,
        st.last_close,
        st.last_day,
        st.bars_seen,
        st.unchanged_run,
        slot.partition,
        slot.offset,
        st.beta_window,
        *lengths,
        len(slot.recent),
        len(slot.pending),
    )
    parts = [header, *map(_le_bytes, windows), _le_bytes(array("q", slot.recent))]
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
    floats = _from_le("d", data[pos : pos + 8 * sum(lengths)])
    pos += 8 * sum(lengths)
    recent = _from_le("q", data[pos : pos + 8 * n_recent])
    pos += 8 * n_recent
    if len(data) != pos + _PENDING.size * n_pending:
        raise StateCodecError(f"{symbol}: state record of {len(data)} bytes is truncated")
    st = SymbolState(beta_window=beta)
    st.last_start_ms, st.last_close, st.last_day = last_start, last_close, last_day
    st.bars_seen, st.unchanged_run = bars_seen, unchanged
    windows, start = {}, 0
    for name, n in zip(PERSISTED_WINDOWS, lengths, strict=True):
        windows[name] = floats[start : start + n]
        start += n
    st.load_windows(windows)
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


def encode_profile(slot: Slot, minute: int) -> bytes:
    return _le_bytes(slot.state.tod.get(minute, _EMPTY))


def decode_profile(data: bytes) -> array[float]:
    return _from_le("d", data)[-TOD_DAYS:]


StateRecord = tuple[int, str, int | None, bytes]  # partition, symbol, minute (None: slot), value


def dirty_state(slots: dict[str, Slot], dirty: set[str]) -> list[StateRecord]:
    """A record for every changed slot and minute profile (both engines' changelog values, each
    under its own keys); clears the marks."""
    records: list[StateRecord] = []
    for symbol in dirty:
        slot = slots[symbol]
        records.append((slot.partition, symbol, None, encode_slot(slot)))
        for minute in slot.changed_minutes:
            records.append((slot.partition, symbol, minute, encode_profile(slot, minute)))
        slot.changed_minutes.clear()
    dirty.clear()
    return records


def read_slot(symbol: str, value: bytes) -> Slot:
    """A Faust `symbol-state` table value: a binary record, or the JSON snapshot that versions
    before the binary records wrote (still in a changelog until compaction replaces it)."""
    if value[:1] == b"{":
        return Slot.from_snapshot(json.loads(value))
    return decode_slot(symbol, value)


def read_profile(value: bytes) -> array[float]:
    """A Faust `minute-profile` table value: binary float64s, or an earlier version's JSON list.

    A binary record cannot read as "[...]": its last byte is a float64's sign and exponent, and
    "]" there would be a log volume beyond 1e140."""
    if value[:1] == b"[" and value[-1:] == b"]":
        return array("d", json.loads(value)[-TOD_DAYS:])
    return decode_profile(value)


_EMPTY = array("d")
_LITTLE = sys.byteorder == "little"


def _le_bytes(values: array) -> bytes:  # type: ignore[type-arg]
    """An array's items as little-endian bytes (the records' byte order on any host)."""
    if _LITTLE:
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def _from_le(typecode: str, data: bytes) -> array:  # type: ignore[type-arg]
    values = array(typecode)
    values.frombytes(data)
    if not _LITTLE:
        values.byteswap()
    return values
