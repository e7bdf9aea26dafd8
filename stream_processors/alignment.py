"""Per-symbol bar ordering, duplicate and late detection, and market alignment for the features.

A symbol's bar of minute t is computed when the market proxy's return for minute t is known, or
when the market stream has moved past t (its bars arrive in order, so that minute's bar will never
come), or - if the market feed stalls - once the bar waited `allowed_lateness` in wall-clock time
and the event-time watermark passed t + allowed lateness; the relative features then use None (0).
So streaming equals `compute_features_batch` whenever the market bars arrive in order, whatever
the partitioning or consumption speed. The market proxy itself never waits: its return is its own.
"""

from __future__ import annotations

import base64
import time
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stream_processors.feast_push import FeatureRow
from tickwatch.features import PERSISTED_WINDOWS, Bar, MarketState, SymbolState, session_slot
from tickwatch.schemas import DAY_MS

RECENT_STARTS = 32  # remembered bar starts per symbol: a repeat of any of them is a duplicate
MARKET_HISTORY_MS = 7 * DAY_MS

ACCEPTED, DUPLICATE, OUT_OF_ORDER, REPLAYED = "accepted", "duplicate", "out_of_order", "replayed"
# bar start, the proxy's log return, volume surprise (z) and volume excess (log units)
MarketMinute = tuple[int, float, float, float]


def _unpack(text: str) -> list[float]:
    return array("d", base64.b64decode(text)).tolist()


@dataclass
class Slot:
    """One symbol's durable state: rolling features, bars waiting for the market, last offset."""

    state: SymbolState
    partition: int = -1
    offset: int = -1  # Kafka offset of the last bar seen: re-reads after a restart are skipped
    pending: deque[Bar] = field(default_factory=deque)
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_STARTS))
    changed_minutes: set[int] = field(default_factory=set)  # minute-of-day profiles to persist
    waiting_since: float = 0.0  # monotonic time the head bar started waiting (not persisted)

    def last_start(self) -> int:
        return self.pending[-1].start_ms if self.pending else self.state.last_start_ms

    @classmethod
    def from_snapshot(cls, core: dict[str, Any]) -> Slot:
        """A slot from the JSON snapshot the Faust tables held before the binary records (float
        windows as base64 float64 arrays; the minute profiles were kept apart)."""
        unpacked = {key: _unpack(core[key]) for key in PERSISTED_WINDOWS}
        state = SymbolState.from_dict({**core, **unpacked, "tod": {}})
        return cls(
            state=state,
            partition=int(core["partition"]),
            offset=int(core["offset"]),
            pending=deque(Bar(*b) for b in core["pending"]),
            recent=deque(core["recent"], maxlen=RECENT_STARTS),
            waiting_since=time.monotonic(),
        )


@dataclass
class Released:
    """What one step produced: feature rows, and market returns to publish."""

    rows: list[FeatureRow] = field(default_factory=list)
    market: list[MarketMinute] = field(default_factory=list)


class MarketAligner:
    """Holds the slots of this worker's symbols and the market returns; releases ready bars."""

    def __init__(self, market_symbol: str, beta_window: int, allowed_lateness_s: float) -> None:
        self.market_symbol = market_symbol
        self.beta_window = beta_window
        self.lateness_ms = int(allowed_lateness_s * 1000)
        self.lateness_s = allowed_lateness_s
        self.slots: dict[str, Slot] = {}
        # return, volume surprise, volume excess
        self.market_returns: dict[int, tuple[float, float, float]] = {}
        self.market_last = -1  # newest market minute known
        self.watermark = -1  # newest bar start seen (event time)
        self.dirty: set[str] = set()
        self.waiting: set[str] = set()  # symbols with queued bars

    def load(self, slots: dict[str, Slot]) -> None:
        """Adopt recovered slots; their queued bars were seen, so they move the watermark."""
        self.slots = slots
        self.waiting = {symbol for symbol, slot in slots.items() if slot.pending}
        for slot in slots.values():
            self.watermark = max(self.watermark, slot.last_start())

    def new_slot(self) -> Slot:
        return Slot(state=SymbolState(self.beta_window))

    def slot(self, symbol: str) -> Slot:
        """The symbol's slot, created empty on its first bar."""
        slot = self.slots.get(symbol)
        if slot is None:
            slot = self.slots[symbol] = self.new_slot()
        return slot

    def offer(self, slot: Slot, symbol: str, bar: Bar, partition: int, offset: int) -> str:
        """Queue a bar (ACCEPTED) or say why not: DUPLICATE, OUT_OF_ORDER or REPLAYED."""
        if partition == slot.partition and offset <= slot.offset:
            return REPLAYED
        slot.partition, slot.offset = partition, offset
        self.dirty.add(symbol)
        start = bar.start_ms
        if start in slot.recent:
            return DUPLICATE
        if start <= slot.last_start():
            return OUT_OF_ORDER
        pending = slot.pending
        slot.recent.append(start)
        if not pending:
            slot.waiting_since = time.monotonic()
        pending.append(bar)
        self.waiting.add(symbol)
        if start > self.watermark:
            self.watermark = start
        return ACCEPTED

    def add_market_returns(self, returns: Iterable[MarketMinute]) -> None:
        """Market minutes (start, return, volume surprise, volume excess) computed by whichever
        worker owns the market proxy."""
        for start, r, volume_z, volume_excess in returns:
            self.market_returns[start] = (r, volume_z, volume_excess)
            self.market_last = max(self.market_last, start)
            self.watermark = max(self.watermark, start)

    def release(self, symbols: Iterable[str], out: Released) -> None:
        """Compute every bar of these symbols that is ready, in order."""
        now = time.monotonic()
        symbols = set(symbols)
        if self.market_symbol in symbols:  # first: its returns may release the others
            symbols.discard(self.market_symbol)
            symbols = [self.market_symbol, *symbols]
        for symbol in symbols:
            slot = self.slots.get(symbol)
            while slot is not None and slot.pending:
                bar = slot.pending[0]
                m = self._market_return(symbol, slot, bar, now)
                if m is _WAIT:
                    break
                feats = (
                    slot.state.update(bar, *m) if m is not None else slot.state.update(bar, None)
                )
                slot.pending.popleft()
                slot.waiting_since = now
                self.dirty.add(symbol)
                if feats is None:
                    continue
                slot.changed_minutes.add(session_slot(bar.start_ms)[1])
                if m is not None and symbol == self.market_symbol:
                    minute = (bar.start_ms, m[0], feats["market_volume_z"], feats["volume_excess"])
                    out.market.append(minute)
                    self.add_market_returns([minute])
                out.rows.append(
                    FeatureRow(symbol, bar.start_ms, bar.close, bar.volume, feats, slot.state.warm)
                )
            if slot is not None and not slot.pending:
                self.waiting.discard(symbol)
        self._prune()

    def waiting_symbols(self) -> list[str]:
        return list(self.waiting)

    def _market_return(self, symbol: str, slot: Slot, bar: Bar, now: float) -> Any:
        start = bar.start_ms
        if symbol == self.market_symbol:  # its own return; its own volume surprise (None)
            return MarketState.of(slot.state).update(bar), None
        m = self.market_returns.get(start)
        if m is not None:
            return m
        if self.market_last > start:
            return None
        stalled = now - slot.waiting_since >= self.lateness_s
        if stalled and self.watermark >= start + self.lateness_ms:
            return None
        return _WAIT

    def _prune(self) -> None:
        if len(self.market_returns) > 20_000:
            horizon = self.market_last - MARKET_HISTORY_MS
            self.market_returns = {k: v for k, v in self.market_returns.items() if k >= horizon}


_WAIT = object()
