"""Malformed and hostile Polygon frames for fault drills, each with the dead-letter kind it earns.

The replay server broadcasts them on `/admin/garbage?n=N` (only with `replay.fault_hooks`); the
producer must refuse every one with a (bounded) dead letter of the given kind, publish nothing
and keep running: a multi-MB frame, one nested past any decoder's depth, binary frames.
"""

from __future__ import annotations

import json
import time
from collections import Counter


def _bar(symbol: str, open_: float, start_ms: int) -> dict:
    return {
        "ev": "AM",
        "sym": symbol,
        "v": 100,
        "av": 100,
        "op": 10.0,
        "vw": 10.0,
        "o": open_,
        "c": 10.0,
        "h": 10.5,
        "l": 9.5,
        "a": 10.0,
        "z": 10,
        "s": start_ms,
        "e": start_ms + 60_000,
    }


BIG_FRAME_BYTES = 3_000_000  # far above the broker's record limit, below the frame limit
DEEP = 100_000  # nesting levels: deeper than any JSON decoder's recursion limit


def hostile_frames(now_ms: int | None = None) -> list[tuple[str, str | bytes]]:
    """One round of (expected dead-letter kind, frame): text frames, and bytes sent as binary."""
    t = (now_ms or int(time.time() * 1000)) // 60_000 * 60_000
    nan_trade = {"ev": "T", "sym": "AAPL", "p": float("nan"), "s": 10, "t": t}
    deep = "[" * DEEP + "]" * DEEP
    return [
        ("bad_frame", '[{"ev": "T", "sym": "AAPL", "p": 1'),  # truncated JSON
        ("invalid", json.dumps([nan_trade])),  # NaN price
        ("invalid", json.dumps([_bar("AAPL", -1.0, t)])),  # negative price
        ("unknown_event", json.dumps([{"ev": "XX", "sym": "AAPL", "t": t}])),
        ("unknown_symbol", json.dumps([_bar("ZZZZ", 10.0, t)])),
        ("unknown_event", json.dumps([{"ev": "XL", "pad": "z" * BIG_FRAME_BYTES}])),  # multi-MB
        ("too_deep", f'[{{"ev": "T", "sym": "AAPL", "x": {deep}}}]'),
        ("bad_frame", b"\xff\xfe\x00 binary, not UTF-8"),
        ("unknown_event", json.dumps([{"ev": "XB", "t": t}]).encode()),  # binary JSON
    ]


def expected_dead_letters(rounds: int) -> Counter[str]:
    """Dead letters by kind that `rounds` rounds of hostile frames must produce."""
    return Counter(
        {kind: n * rounds for kind, n in Counter(kind for kind, _ in hostile_frames(0)).items()}
    )
