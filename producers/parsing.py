"""Turn Polygon WebSocket frames (JSON arrays of mixed events) into validated wire records.

Every element ends up in exactly one place: an `Event` (T -> Trade, Q -> Quote, AM -> MinuteBar,
as encoded wire JSON), a status, a `Refused` with the precise reason, or `skipped` (per-second `A`
aggregates: valid data, but not minute bars, so they are counted and dropped on purpose).
Only a frame that is not a JSON array at all raises, and then always `FrameError`; one bad
element (too deeply nested, invalid, unknown) costs that element alone, never its neighbours.

Trades are the volume, so a frame is first decoded in one go by msgspec into typed structs that
carry exactly the `Trade` schema's constraints, and trades are re-encoded in C. A frame msgspec
refuses (any invalid or unexpected element) goes element by element through pydantic, which
gives the record or the precise reason. A property test holds the two paths equal.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, NamedTuple

import msgspec
from msgspec import Meta, Struct
from pydantic import ValidationError

from tickwatch.schemas import MinuteBar, Quote, Trade, WireModel, describe_error, encode

_NUMBER = (int, float)
_MAX_FLOAT = 1.7976931348623157e308
# msgspec mirrors of the Trade schema's constraints; the symbol pattern is checked once per
# distinct symbol (a regex per trade would cost more than decoding it)
_SYMBOL = re.compile(r"[A-Z][A-Z0-9.\-]{0,15}")
_KNOWN_SYMBOLS: set[str] = set()
_MAX_KNOWN_SYMBOLS = 100_000
_Price = Annotated[float, Meta(gt=0, le=_MAX_FLOAT)]
_Size = Annotated[float, Meta(ge=0, le=_MAX_FLOAT)]
_Millis = Annotated[int, Meta(ge=946_684_800_000, le=4_102_444_800_000)]


class _WireT(Struct, tag_field="ev", tag="T", gc=False):
    sym: str
    p: _Price
    s: _Size
    t: _Millis
    x: int = 0
    i: str = ""
    z: int = 0
    c: list[int] = []
    q: int = 0


class _WireOther(Struct, tag_field="ev"):
    """Any other known event, fields left to pydantic: only the tag is checked here."""


class _WireQ(_WireOther, tag="Q"):
    pass


class _WireAM(_WireOther, tag="AM"):
    pass


class _WireA(_WireOther, tag="A"):
    pass


class _WireStatus(_WireOther, tag="status"):
    pass


class _TradeOut(Struct, gc=False):
    """Field for field the `Trade` wire schema, encoded by msgspec."""

    v: int
    symbol: str
    price: float
    size: float
    timestamp_ms: int
    exchange: int
    trade_id: str
    tape: int
    conditions: list[int]
    sequence: int


_new_event = tuple.__new__  # builds an Event without NamedTuple's Python-level __new__
_FRAME = msgspec.json.Decoder(list[_WireT | _WireQ | _WireAM | _WireA | _WireStatus])
_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])  # the array split, elements left as JSON
# a JSON string, or one structural character: enough to find the top-level commas of an array
# without recursing into its elements (for elements nested deeper than any decoder allows)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.S)
_CLOSER = {"[": "]", "{": "}"}
_ENCODE = msgspec.json.Encoder().encode


class FrameError(ValueError):
    """The whole frame is unusable: not UTF-8, not JSON, or not a JSON array."""


class Event(NamedTuple):
    """One validated record: `kind` is T, Q or AM; `payload` is its wire-schema JSON."""

    kind: str
    symbol: str
    timestamp_ms: int  # trade/quote time, or the bar's start
    payload: bytes


class Refused(NamedTuple):
    """One element refused: its raw JSON text, a short `kind` label, and the full reason."""

    raw: str
    kind: str
    reason: str


class ParsedFrame:
    """Everything one frame held, sorted into events, statuses, refusals and skipped counts."""

    __slots__ = ("events", "statuses", "refused", "skipped")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[tuple[str, str]] = []
        self.refused: list[Refused] = []
        self.skipped: dict[str, int] = {}


def parse_frame(frame: bytes | str, source: str = "polygon") -> ParsedFrame:
    """Parse one frame; `source` is the MinuteBar source stamped on AM bars."""
    try:
        decoded = _FRAME.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _parse_elements(frame, source)
    out = ParsedFrame()
    append, known, wire_t, trade_out, encode_trade = (
        out.events.append,
        _KNOWN_SYMBOLS,
        _WireT,
        _TradeOut,
        _ENCODE,
    )  # the per-trade loop below is the producer's hot path: locals, no global lookups
    elements = None
    for idx, el in enumerate(decoded):
        if type(el) is wire_t and ((sym := el.sym) in known or _new_valid_symbol(sym)):
            t = el.t
            payload = encode_trade(trade_out(1, sym, el.p, el.s, t, el.x, el.i, el.z, el.c, el.q))
            append(_new_event(Event, ("T", sym, t, payload)))
        else:  # status, A, Q, AM, odd symbols: few per frame, validated by pydantic
            if elements is None:
                elements = _ELEMENTS.decode(frame)  # cannot fail: msgspec has just parsed it
            raw = bytes(elements[idx]).decode("utf-8", "replace")
            try:
                el_raw = json.loads(raw)
            except (ValueError, RecursionError):  # cannot happen after msgspec accepted it
                return _parse_elements(frame, source)
            _parse_slow(
                el_raw, el_raw.get("ev") if type(el_raw) is dict else None, source, out, raw
            )
    return out


def _new_valid_symbol(symbol: str) -> bool:
    if not _SYMBOL.fullmatch(symbol):
        return False
    if len(_KNOWN_SYMBOLS) < _MAX_KNOWN_SYMBOLS:
        _KNOWN_SYMBOLS.add(symbol)
    return True


def _parse_elements(frame: bytes | str, source: str) -> ParsedFrame:
    """The careful path: split the array, then stdlib JSON and pydantic for each element."""
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not UTF-8: {exc}") from None
    out = ParsedFrame()
    for raw in _split_elements(text):
        try:
            el = json.loads(raw)
        except RecursionError:
            out.refused.append(
                Refused(raw, "too_deep", "element nested deeper than the JSON parser allows")
            )
            continue
        except ValueError as exc:
            out.refused.append(Refused(raw, "invalid", f"element is not valid JSON: {exc}"))
            continue
        _parse_slow(el, el.get("ev") if type(el) is dict else None, source, out, raw)
    return out


def _split_elements(text: str) -> list[str]:
    """The JSON text of each top-level element of the array `text`; FrameError if not one."""
    try:
        decoded = _ELEMENTS.decode(text)
    except RecursionError:
        return _split_deep(text)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        try:  # stdlib JSON also takes NaN and Infinity (refused later, by the schemas)
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise FrameError(f"frame is not valid JSON: {str(exc)[:200]}") from None
        if isinstance(value, list):
            return [_encoded(el) for el in value]
        kind = type(value).__name__
        raise FrameError(f"frame is a JSON {kind}, not an array of events") from None
    return [bytes(r).decode("utf-8", "replace") for r in decoded]


def _split_deep(text: str) -> list[str]:
    """Split an array with a tokenizer, so a too-deep element is one refusal, not the frame's."""
    closers: list[str] = []
    parts: list[str] = []
    begin = 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok in _CLOSER:
            if not closers:
                if tok != "[" or text[: m.start()].strip():
                    raise FrameError("frame is not valid JSON: not an array of events")
                begin = m.end()
            closers.append(_CLOSER[tok])
        elif tok in ("]", "}"):
            if not closers or closers.pop() != tok:
                raise FrameError("frame is not valid JSON: mismatched brackets")
            if not closers:
                if text[m.end() :].strip():
                    raise FrameError("frame is not valid JSON: data after the array")
                parts.append(text[begin : m.start()].strip())
                return [] if parts == [""] else parts
        elif tok == "," and len(closers) == 1:
            parts.append(text[begin : m.start()].strip())
            begin = m.end()
    raise FrameError("frame is not valid JSON: unterminated array")


def _parse_slow(el: Any, ev: Any, source: str, out: ParsedFrame, raw: str | None = None) -> None:
    """Validate one element with pydantic and file it under events, statuses, skipped or refused.

    `raw` is the element's JSON text as received, kept in its refusal (else it is re-encoded)."""

    def _raw(el: Any) -> str:
        return _encoded(el) if raw is None else raw

    if type(el) is not dict:
        out.refused.append(
            Refused(
                _raw(el), "not_an_object", f"element is a JSON {type(el).__name__}, not an object"
            )
        )
        return
    if ev == "status":
        out.statuses.append((str(el.get("status", "")), str(el.get("message", ""))))
        return
    if ev == "A":
        out.skipped["A"] = out.skipped.get("A", 0) + 1
        return
    builder = _BUILDERS.get(ev) if isinstance(ev, str) else None
    if builder is None:
        out.refused.append(
            Refused(
                _raw(el),
                "unknown_event",
                f"unknown event type ev={ev!r} (expected T, Q, AM, A, status)",
            )
        )
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


def _encoded(el: Any) -> str:
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
    return Trade.model_validate(
        {
            "symbol": e["sym"],
            "price": e["p"],
            "size": e["s"],
            "timestamp_ms": e["t"],
            "exchange": e.get("x", 0),
            "trade_id": str(tid) if type(tid) is int else tid,
            "tape": e.get("z", 0),
            "conditions": e.get("c", []),
            "sequence": e.get("q", 0),
        }
    )


def _quote(e: dict[str, Any], source: str) -> Quote:
    _require(e, "sym", "bp", "bs", "ap", "as", "t")
    return Quote.model_validate(
        {
            "symbol": e["sym"],
            "bid_price": e["bp"],
            "bid_size": e["bs"],
            "ask_price": e["ap"],
            "ask_size": e["as"],
            "timestamp_ms": e["t"],
            "bid_exchange": e.get("bx", 0),
            "ask_exchange": e.get("ax", 0),
            "conditions": e.get("c", []),
            "tape": e.get("z", 0),
            "sequence": e.get("q", 0),
        }
    )


def _minute_bar(e: dict[str, Any], source: str) -> MinuteBar:
    """AM carries the bar start and end as `s`/`e` (not `t`); `z` is the average trade size."""
    _require(e, "sym", "s", "e", "o", "h", "l", "c", "v", "vw")
    v, z = e["v"], e.get("z", 0)
    transactions = 0
    if type(v) in _NUMBER and type(z) in _NUMBER and z > 0 and math.isfinite(v / z):
        transactions = round(v / z)
    return MinuteBar.model_validate(
        {
            "symbol": e["sym"],
            "start_ms": e["s"],
            "end_ms": e["e"],
            "open": e["o"],
            "high": e["h"],
            "low": e["l"],
            "close": e["c"],
            "volume": v,
            "vwap": e["vw"],
            "transactions": transactions,
            "source": source,
        }
    )


_BUILDERS: dict[str, tuple[type[WireModel], Any]] = {
    "T": (Trade, _trade),
    "Q": (Quote, _quote),
    "AM": (MinuteBar, _minute_bar),
}
