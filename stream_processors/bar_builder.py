"""One-minute bars from trades: tumbling windows on event time with an allowed lateness.

A window [t, t+60 s) of a symbol closes once the symbol's watermark (its newest trade time) passes
t + 60 s + allowed lateness; a trade for a closed window is late (dead letter). The watermark is
per symbol so the result does not depend on how fast each partition is consumed (a worker-wide
watermark would call a lagging partition's trades late); the price is that a symbol's last window
closes only with its next trade more than the lateness later. Open windows, watermark and last
offset per symbol are JSON-able, so the agent keeps them in a changelog-backed table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tickwatch.schemas import MINUTE_MS, MinuteBar, Trade

ACCEPTED, LATE, REPLAYED = "accepted", "late", "replayed"


@dataclass
class Window:
    """The running aggregate of one symbol's trades in one minute."""

    start_ms: int
    first_ms: int
    last_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    notional: float = 0.0
    transactions: int = 0

    def add(self, price: float, size: float, ts: int) -> None:
        if ts < self.first_ms:
            self.first_ms, self.open = ts, price
        if ts >= self.last_ms:
            self.last_ms, self.close = ts, price
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.volume += size
        self.notional += price * size
        self.transactions += 1

    def to_bar(self, symbol: str) -> MinuteBar:
        vwap = self.notional / self.volume if self.volume > 0 else self.close
        return MinuteBar(
            symbol=symbol,
            start_ms=self.start_ms,
            end_ms=self.start_ms + MINUTE_MS,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            vwap=min(max(vwap, self.low), self.high),
            transactions=self.transactions,
            source="trades",
        )


@dataclass
class SymbolWindows:
    """A symbol's open windows, the last closed minute and the last Kafka offset read."""

    windows: dict[int, Window]
    closed_until: int = -1
    watermark: int = -1
    partition: int = -1
    offset: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": [asdict(w) for w in self.windows.values()],
            "closed_until": self.closed_until,
            "watermark": self.watermark,
            "partition": self.partition,
            "offset": self.offset,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SymbolWindows:
        windows = {w["start_ms"]: Window(**w) for w in d["windows"]}
        return cls(
            windows,
            int(d["closed_until"]),
            int(d["watermark"]),
            int(d["partition"]),
            int(d["offset"]),
        )


class MinuteBarBuilder:
    """Per-symbol tumbling windows; `close_ready` returns the bars whose window has closed."""

    def __init__(self, allowed_lateness_s: float) -> None:
        self.lateness_ms = int(allowed_lateness_s * 1000)
        self.symbols: dict[str, SymbolWindows] = {}
        self.dirty: set[str] = set()

    def add(self, trade: Trade, partition: int = -1, offset: int = -1) -> str:
        """Put a trade in its window: ACCEPTED, LATE (window closed) or REPLAYED (offset seen)."""
        sw = self.symbols.setdefault(trade.symbol, SymbolWindows({}))
        if partition == sw.partition and offset <= sw.offset:
            return REPLAYED
        sw.partition, sw.offset = partition, offset
        self.dirty.add(trade.symbol)
        ts = trade.timestamp_ms
        start = ts - ts % MINUTE_MS
        if start <= sw.closed_until or start + MINUTE_MS + self.lateness_ms <= sw.watermark:
            return LATE
        window = sw.windows.get(start)
        p = trade.price
        if window is None:
            sw.windows[start] = Window(start, ts, ts, p, p, p, p, trade.size, p * trade.size, 1)
        else:
            window.add(p, trade.size, ts)
        sw.watermark = max(sw.watermark, ts)
        return ACCEPTED

    def close_ready(self) -> list[MinuteBar]:
        """Bars of every window the watermark has passed (end + allowed lateness), by time."""
        bars = []
        for symbol, sw in self.symbols.items():
            for start in sorted(sw.windows):
                if start + MINUTE_MS + self.lateness_ms > sw.watermark:
                    break
                bars.append(sw.windows.pop(start).to_bar(symbol))
                sw.closed_until = start
                self.dirty.add(symbol)
        return sorted(bars, key=lambda b: (b.start_ms, b.symbol))
