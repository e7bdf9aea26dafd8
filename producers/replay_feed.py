"""What the replay server serves: history and live bars, and their Polygon wire events."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from producers.market_sim import recent_start_day, simulate, trades_for, trading_day_of
from tickwatch.bar_files import read_bars_csv
from tickwatch.schemas import AnomalyLabel, MinuteBar
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
QUOTE_HALF_SPREAD = 0.01
START_OVER = (
    "nothing new to stream until the next trading day; to replay from the start, stop the stack "
    "and remove its data, trained models included: `make down && make clean`"
)


@dataclass
class ReplayData:
    """Bars already "in the past" (served by REST only), bars to stream live, and the labels."""

    history: list[MinuteBar]
    live: list[MinuteBar]
    labels: list[AnomalyLabel] = field(default_factory=list)
    # live bars an earlier run already streamed (see resume_after): not streamed again; REST
    # serves them once the clock runs, like every streamed minute (not before: a backfill for
    # training still gets the history days only)
    streamed: list[MinuteBar] = field(default_factory=list)


def load_replay_data(settings: Settings) -> ReplayData:
    """The user's CSV if `replay.csv_path` is set, else the simulated market (recent days)."""
    r = settings.replay
    if r.csv_path:
        bars, errors = read_bars_csv(r.csv_path)
        for err in errors:
            log.warning("%s line %d refused: %s", r.csv_path, err.line, err.reason)
        labels: list[AnomalyLabel] = []
    else:
        days = r.history_days + r.days
        sim = simulate(settings.symbols, days=days, seed=r.seed, start_day=recent_start_day(days))
        bars, labels = sim.bars, sim.labels
    return split_history(bars, labels, r.history_days)


def load_resumed(settings: Settings) -> ReplayData:
    """What `tickwatch replay-server` serves: load_replay_data, resumed after the bars already
    in Kafka when `replay.resume` is set."""
    data = load_replay_data(settings)
    if not settings.replay.resume:
        return data
    from producers.bar_watermarks import last_bar_starts

    return resume_after(data, last_bar_starts(settings))


def resume_note(data: ReplayData) -> str | None:
    """What to tell the user about a resumed replay (None when it starts from the beginning)."""
    streamed = len(minute_slots(data.streamed))
    if not streamed:
        return None
    left = len(minute_slots(data.live))
    if not left:
        return f"every live minute of the replay is already in Kafka: {START_OVER}"
    return f"the replay resumes after the {streamed} minutes already in Kafka ({left} to go)"


def resume_after(data: ReplayData, last_starts: dict[str, int]) -> ReplayData:
    """The replay continued after the bars an earlier run already put in Kafka (`last_starts`,
    symbol -> newest bar start): live minutes up to the newest one that every replayed symbol
    in Kafka has reached move to `streamed`. Unchanged when none of the replayed symbols is in
    Kafka."""
    known = [last_starts[s] for s in {b.symbol for b in data.live} if s in last_starts]
    if not known:
        return data
    cut = min(known)
    done = [b for b in data.live if b.start_ms <= cut]
    if not done:
        return data
    live = [b for b in data.live if b.start_ms > cut]
    return ReplayData(data.history, live, data.labels, data.streamed + done)


def split_history(
    bars: list[MinuteBar], labels: list[AnomalyLabel], history_days: int
) -> ReplayData:
    """The first `history_days` trading days are history (at least one day is left live)."""
    days = sorted({trading_day_of(b.start_ms) for b in bars})
    if not days:
        return ReplayData([], [], labels)
    cut_day = days[min(history_days, len(days) - 1)]
    history = [b for b in bars if trading_day_of(b.start_ms) < cut_day]
    live = [b for b in bars if trading_day_of(b.start_ms) >= cut_day]
    return ReplayData(history, live, labels)


def minute_slots(bars: list[MinuteBar]) -> list[list[MinuteBar]]:
    """Bars grouped by start minute, in time order."""
    slots: dict[int, list[MinuteBar]] = defaultdict(list)
    for b in bars:
        slots[b.start_ms].append(b)
    return [slots[k] for k in sorted(slots)]


class AggregateState:
    """The running day totals an `AM` event carries: accumulated volume, day open, day VWAP."""

    def __init__(self) -> None:
        self._day: dict[str, tuple[object, float, float, float]] = {}

    def am_event(self, bar: MinuteBar) -> dict:
        """The Polygon `AM` event for `bar` (timestamps `s`/`e` in Unix ms)."""
        day = trading_day_of(bar.start_ms)
        prev = self._day.get(bar.symbol)
        if prev is None or prev[0] != day:
            prev = (day, bar.open, 0.0, 0.0)
        _, day_open, acc_volume, acc_value = prev
        acc_volume += bar.volume
        acc_value += bar.vwap * bar.volume
        self._day[bar.symbol] = (day, day_open, acc_volume, acc_value)
        return {
            "ev": "AM",
            "sym": bar.symbol,
            "v": bar.volume,
            "av": acc_volume,
            "op": day_open,
            "vw": bar.vwap,
            "o": bar.open,
            "c": bar.close,
            "h": bar.high,
            "l": bar.low,
            "a": round(acc_value / acc_volume, 4) if acc_volume else bar.vwap,
            "z": round(bar.volume / bar.transactions, 4) if bar.transactions else 0,
            "s": bar.start_ms,
            "e": bar.end_ms,
        }


def trade_events(bar: MinuteBar) -> list[dict]:
    """The bar's trades as Polygon `T` events."""
    return [
        {
            "ev": "T",
            "sym": t.symbol,
            "i": t.trade_id,
            "x": t.exchange,
            "p": t.price,
            "s": t.size,
            "c": t.conditions,
            "t": t.timestamp_ms,
            "q": t.sequence,
            "z": t.tape,
        }
        for t in trades_for(bar)
    ]


def quote_event(trade: dict) -> dict:
    """A Polygon `Q` (NBBO) event around a trade's price."""
    p = trade["p"]
    return {
        "ev": "Q",
        "sym": trade["sym"],
        "bx": trade["x"],
        "ax": trade["x"],
        "bp": round(max(p - QUOTE_HALF_SPREAD, 0.0001), 4),
        "bs": 1 + trade["q"] % 9,
        "ap": round(p + QUOTE_HALF_SPREAD, 4),
        "as": 1 + trade["q"] % 7,
        "c": [0],
        "i": [],
        "t": trade["t"],
        "q": trade["q"],
        "z": trade["z"],
    }


def rest_result(bar: MinuteBar) -> dict:
    """One REST aggregates result (`t` is the bar start in Unix ms)."""
    return {
        "v": bar.volume,
        "vw": bar.vwap,
        "o": bar.open,
        "c": bar.close,
        "h": bar.high,
        "l": bar.low,
        "t": bar.start_ms,
        "n": bar.transactions,
    }
