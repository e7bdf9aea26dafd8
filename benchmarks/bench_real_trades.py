"""Real trades through the `T` path: 500,000 E-mini S&P 500 trades to minute bars, exactly.

The tape is `es_ticks_2013-09.csv.gz` of ../shared/data/real-minute (mlfinpy 0.1.2's
`tick_data.csv`, MIT; read in place), sent as Polygon `T` frames of EVENTS_PER_FRAME trades. The
stage is the CPU work of both stages the trades cross, without Kafka in between: the producer's
frame parsing and validation (`parse_frame`, each trade encoded as the record it publishes), then
the features stage's decoding of each record and its minute-bar builder (`MinuteBarBuilder`, what
`bars-from-trades` runs). The baseline is the raw way to the same bars: `json.loads` of the same
frames and a pandas group-by per minute (open, high, low, close, volume, VWAP, count). Both are
timed from the frames in hand to the last closed bar, ROUNDS times; the best round of each is
compared. Every closed bar must equal the baseline's: a differing bar is an error and fails the
verdict.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Timer
from ops.results import Verdict, met, table, write_section
from producers.parsing import parse_frame
from stream_processors.bar_builder import ACCEPTED, MinuteBarBuilder
from tickwatch.schemas import MINUTE_MS, Trade, decode

TAPE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "real-minute"
    / "es_ticks_2013-09.csv.gz"
)
EVENTS_PER_FRAME = 500
ROUNDS = 3
GOAL_RATE = 100_000  # trades/s through the path on one core
COLUMNS = ["open", "high", "low", "close", "volume", "vwap", "transactions"]


def frames() -> list[str]:
    """The tape as Polygon `T` frames, in tape order."""
    with gzip.open(TAPE, "rt") as f:
        tape = pd.read_csv(f)
    events = [
        {"ev": "T", "sym": s, "i": str(n), "x": 1, "p": float(p), "s": float(z), "t": int(t)}
        for n, (s, t, p, z) in enumerate(tape.itertuples(index=False, name=None))
    ]
    return [
        json.dumps(events[i : i + EVENTS_PER_FRAME])
        for i in range(0, len(events), EVENTS_PER_FRAME)
    ]


def stage(frames: list[str]) -> tuple[pd.DataFrame, int]:
    """Frames -> parsed and encoded trade records -> decoded trades -> closed minute bars; and
    the trades refused on the way."""
    builder = MinuteBarBuilder(allowed_lateness_s=120)
    bars, refused, offset = [], 0, 0
    for frame in frames:
        parsed = parse_frame(frame)
        refused += len(parsed.refused) + sum(parsed.skipped.values())
        for event in parsed.events:
            trade = decode(Trade, event.payload)
            refused += builder.add(trade, 0, offset) != ACCEPTED
            offset += 1
        bars += builder.close_ready()
    out = pd.DataFrame(
        [
            (b.start_ms, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.transactions)
            for b in bars
        ],
        columns=["minute", *COLUMNS],
    )
    return out.set_index("minute"), refused


def baseline(frames: list[str]) -> pd.DataFrame:
    """json.loads of the same frames and a pandas group-by per minute."""
    rows = [(e["t"], e["p"], e["s"]) for frame in frames for e in json.loads(frame)]
    t, p, s = (np.asarray(c) for c in zip(*rows, strict=True))
    df = pd.DataFrame({"minute": t - t % MINUTE_MS, "price": p, "size": s, "notional": p * s})
    g = df.groupby("minute", sort=True)
    return pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum(),
            "vwap": g["notional"].sum() / g["size"].sum(),
            "transactions": g.size(),
        }
    )


def main() -> None:
    fr = frames()
    n = sum(frame.count('"ev"') for frame in fr)
    stage_s, base_s = [], []
    for _ in range(ROUNDS):
        with Timer() as t:
            got, refused = stage(fr)
        stage_s.append(t.seconds)
        with Timer() as t:
            want = baseline(fr)
        base_s.append(t.seconds)
    # the builder closes a minute when a later one starts: the last minutes stay open
    want = want[want.index <= got.index.max()]
    same_index = list(got.index) == list(want.index)
    differing = (
        int((~np.isclose(got[COLUMNS], want[COLUMNS], rtol=1e-12, atol=0)).any(axis=1).sum())
        if same_index
        else len(want)
    )
    rate, base_rate = n / min(stage_s), n / min(base_s)
    ok = differing == 0 and refused == 0 and rate >= GOAL_RATE
    rows = [
        [
            "T path (parse, encode, decode, bar builder)",
            f"{min(stage_s):.2f}",
            f"{rate:,.0f}",
            f"{rate / base_rate:.2f}",
        ],
        ["baseline: json.loads + pandas group-by", f"{min(base_s):.2f}", f"{base_rate:,.0f}", "1"],
    ]
    body = (
        f"{n:,} real E-mini S&P 500 trades (2013-09-01..03, `{TAPE.name}`, read in place) as "
        f"Polygon `T` frames of {EVENTS_PER_FRAME}; best of {ROUNDS} rounds, one process. "
        f"{len(got):,} closed minute bars; bars differing from the baseline's: {differing}; "
        f"trades refused: {refused}.\n\n"
        + table(["path", "seconds", "trades/s", "x baseline"], rows)
    )
    verdict = Verdict(
        "real trades -> minute bars (the T path's CPU work, 500,000 E-mini trades)",
        f"{rate:,.0f} trades/s; {differing} of {len(got):,} bars differ, {refused} trades refused",
        f"json.loads + pandas group-by: {base_rate:,.0f} trades/s ({rate / base_rate:.2f}x)",
        f">= {GOAL_RATE:,} trades/s on one core, every bar equal to the baseline's",
        met(ok),
    )
    write_section("real-trades", "Real trades to minute bars", body, [verdict])


if __name__ == "__main__":
    main()
