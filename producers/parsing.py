"""Turn Polygon WebSocket frames (JSON arrays of mixed events) into validated wire records.

Every element ends up in exactly one place: an `Event` (T -> Trade, Q -> Quote, AM -> MinuteBar,
as encoded wire JSON), a status, a `Refused` with the precise reason, or `skipped` (per-second `A`
aggregates: valid data, but not minute bars, so they are counted and dropped on purpose).
Only a frame that is not a JSON array at all raises, and then always `FrameError`.

Trades are the volume, so they take a fast path that checks exactly the `Trade` schema's rules by
hand and writes the JSON directly; anything the fast path is unsure of goes through pydantic,
which produces the record or the precise reason. A property test holds the two paths equal.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tickwatch.schemas import MinuteBar, Quote, Trade, WireModel, describe_error, encode

_SYMBOL = re.compile(r"[A-Z][A-Z0-9.\-]{0,15}")
_T_MIN, _T_MAX = 946_684_800_000, 4_102_444_800_000
_NUMBER = (int, float)
_BIG = 2.0**53  # beyond this the fast path defers to pydantic (float conversion of huge ints)


class FrameError(ValueError):
    """The whole frame is unusable: not UTF-8, not JSON, or not a JSON array."""


@dataclass(frozen=True, slots=True)
class Event:
    """One validated record: `kind` is T, Q or AM; `payload` is its wire-schema JSON."""

    kind: str
    symbol: str
    timestamp_ms: int  # trade/quote time, or the bar's start
    payload: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """One element refused: its raw JSON text, a short `kind` label, and the full reason."""

    raw: str
    kind: str
    reason: str


@dataclass
class ParsedFrame:
    """Everything one frame held, sorted into events, statuses, refusals and skipped counts."""

    events: list[Event] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def parse_frame(frame: bytes | str, source: str = "polygon") -> ParsedFrame:
    """Parse one frame; `source` is the MinuteBar source stamped on AM bars."""
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        elements = json.loads(text)
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not UTF-8: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"frame is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(elements, list):
        raise FrameError(f"frame is a JSON {type(elements).__name__}, not an array of events")
    out = ParsedFrame()
    for el in elements:
        ev = el.get("ev") if type(el) is dict else None
        if ev == "T":
            payload = _fast_trade(el)
            if payload is not None:
                out.events.append(Event("T", el["sym"], el["t"], payload))
                continue
        _parse_slow(el, ev, source, out)
    return out


def _fast_trade(e: dict[str, Any]) -> bytes | None:
    """The trade's wire JSON if every field is plainly valid, else None (use the slow path)."""
    sym, p, s, t = e.get("sym"), e.get("p"), e.get("s"), e.get("t")
    x, i, z, c, q = e.get("x", 0), e.get("i", ""), e.get("z", 0), e.get("c", []), e.get("q", 0)
    if not (type(sym) is str and _SYMBOL.fullmatch(sym) and type(t) is int
            and _T_MIN <= t <= _T_MAX and type(p) in _NUMBER and type(s) in _NUMBER
            and type(x) is int and type(z) is int and type(q) is int and type(i) is str
            and type(c) is list and 0 < p < _BIG and 0 <= s < _BIG
            and all(type(k) is int for k in c)):
        return None
    tid = f'"{i}"' if i.isascii() and i.isalnum() else json.dumps(i)
    return (f'{{"v":1,"symbol":"{sym}","price":{float(p)!r},"size":{float(s)!r},'
            f'"timestamp_ms":{t},"exchange":{x},"trade_id":{tid},"tape":{z},'
            f'"conditions":[{",".join(map(str, c))}],"sequence":{q}}}').encode()


def _parse_slow(el: Any, ev: Any, source: str, out: ParsedFrame) -> None:
    """Validate one element with pydantic and file it under events, statuses, skipped or refused."""
    if type(el) is not dict:
        out.refused.append(Refused(_raw(el), "not_an_object",
                                   f"element is a JSON {type(el).__name__}, not an object"))
        return
    if ev == "status":
        out.statuses.append((str(el.get("status", "")), str(el.get("message", ""))))
        return
    if ev == "A":
        out.skipped["A"] = out.skipped.get("A", 0) + 1
        return
    builder = _BUILDERS.get(ev) if isinstance(ev, str) else None
    if builder is None:
        out.refused.append(Refused(_raw(el), "unknown_event",
                                   f"unknown event type ev={ev!r} (expected T, Q, AM, A, status)"))
        return
    model, make = builder
    try:
        record = make(el, source)
    except ValidationError as exc:
        out.refused.append(Refused(_raw(el), "invalid", f"{ev}: {describe_error(model, exc)}"))
        return
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        out.refused.append(Refused(_raw(el), "invalid", f"{ev}: {type(exc).__name__}: {exc}"))
        return
    ts = record.start_ms if isinstance(record, MinuteBar) else record.timestamp_ms
    out.events.append(Event(ev, record.symbol, ts, encode(record)))


def _raw(el: Any) -> str:
    try:
        return json.dumps(el)
    except (ValueError, TypeError, RecursionError):
        return repr(el)[:10_000]


def _require(e: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in e]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")


def _trade(e: dict[str, Any], source: str) -> Trade:
    _require(e, "sym", "p", "s", "t")
    tid = e.get("i", "")
    return Trade.model_validate({
        "symbol": e["sym"], "price": e["p"], "size": e["s"], "timestamp_ms": e["t"],
        "exchange": e.get("x", 0), "trade_id": str(tid) if type(tid) is int else tid,
        "tape": e.get("z", 0), "conditions": e.get("c", []), "sequence": e.get("q", 0),
    })


def _quote(e: dict[str, Any], source: str) -> Quote:
    _require(e, "sym", "bp", "bs", "ap", "as", "t")
    return Quote.model_validate({
        "symbol": e["sym"], "bid_price": e["bp"], "bid_size": e["bs"], "ask_price": e["ap"],
        "ask_size": e["as"], "timestamp_ms": e["t"], "bid_exchange": e.get("bx", 0),
        "ask_exchange": e.get("ax", 0), "conditions": e.get("c", []), "tape": e.get("z", 0),
        "sequence": e.get("q", 0),
    })


def _minute_bar(e: dict[str, Any], source: str) -> MinuteBar:
    """AM carries the bar start and end as `s`/`e` (not `t`); `z` is the average trade size."""
    _require(e, "sym", "s", "e", "o", "h", "l", "c", "v", "vw")
    v, z = e["v"], e.get("z")
    transactions = 0
    if type(v) in _NUMBER and type(z) in _NUMBER and z > 0 and math.isfinite(v / z):
        transactions = round(v / z)
    return MinuteBar.model_validate({
        "symbol": e["sym"], "start_ms": e["s"], "end_ms": e["e"], "open": e["o"],
        "high": e["h"], "low": e["l"], "close": e["c"], "volume": v, "vwap": e["vw"],
        "transactions": transactions, "source": source,
    })


_BUILDERS: dict[str, tuple[type[WireModel], Any]] = {
    "T": (Trade, _trade), "Q": (Quote, _quote), "AM": (MinuteBar, _minute_bar),
}
