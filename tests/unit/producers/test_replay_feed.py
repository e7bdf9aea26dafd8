"""What the replay server serves: history/live split (simulated or CSV), subscriptions, backoff."""

from __future__ import annotations

from producers.market_sim import simulate, trading_day_of
from producers.polygon_ws import (
    RECONNECT_FIRST_S,
    RECONNECT_MAX_S,
    _first_bar_start,
    subscription,
)
from producers.replay_feed import (
    load_replay_data,
    minute_slots,
    resume_after,
    resume_note,
    split_history,
)
from producers.replay_server import ReplayServer
from tickwatch.retry import backoff_s
from tickwatch.settings import Settings


def test_history_comes_before_live_and_every_bar_is_served_once() -> None:
    sim = simulate(["AAPL", "VOO"], days=4, seed=3)
    data = split_history(sim.bars, sim.labels, history_days=3)
    assert data.history + data.live == sim.bars
    assert {trading_day_of(b.start_ms) for b in data.live} == {sim.trading_days[3]}
    slots = minute_slots(data.live)
    assert len(slots) == 390 and all(len(s) == 2 for s in slots)
    short = split_history(sim.bars, sim.labels, history_days=10)  # one day is always live
    assert {trading_day_of(b.start_ms) for b in short.live} == {sim.trading_days[3]}


def test_a_resumed_replay_streams_only_the_minutes_after_the_bars_in_kafka() -> None:
    sim = simulate(["AAPL", "VOO"], days=3, seed=3)
    data = split_history(sim.bars, sim.labels, history_days=2)
    starts = [s[0].start_ms for s in minute_slots(data.live)]
    assert resume_after(data, {}) is data and resume_after(data, {"MSFT": starts[-1]}) is data
    assert resume_after(data, {"AAPL": starts[0] - 60_000}) is data  # Kafka is behind the replay
    assert resume_note(data) is None

    # the symbol furthest behind decides: VOO's minutes 11.. were never streamed
    resumed = resume_after(data, {"AAPL": starts[40], "VOO": starts[10]})
    assert resumed.history == data.history and resumed.streamed + resumed.live == data.live
    assert resumed.live[0].start_ms == starts[11] and resumed.labels == data.labels
    assert len(minute_slots(resumed.live)) == len(starts) - 11
    assert "11 minutes" in (resume_note(resumed) or "")
    # REST: the skipped minutes are served once the clock runs, not to a backfill before it
    index = ReplayServer(Settings(_env_file=None), resumed).index
    assert index.visible_until == data.history[-1].start_ms
    assert len(index.bars["VOO"]) == len(data.history + data.live) // 2

    done = resume_after(data, {"AAPL": starts[-1], "VOO": starts[-1] + 60_000})
    assert done.live == [] and "make clean" in (resume_note(done) or "")


def test_csv_replay(tmp_path) -> None:
    path = tmp_path / "bars.csv"
    rows = ["symbol,timestamp,open,high,low,close,volume,vwap,transactions"]
    for day, hour in (("2025-03-03", 14), ("2025-03-04", 14)):
        rows += [f"XYZ,{day}T{hour}:3{m}:00Z,10,11,9,10.5,100,10.2,3" for m in range(3)]
    rows.append("XYZ,2025-03-04T14:40:00Z,10,9,11,10,1,10,1")  # refused, logged
    path.write_text("\n".join(rows) + "\n")
    s = Settings(_env_file=None)
    s = s.model_copy(
        update={"replay": s.replay.model_copy(update={"csv_path": path, "history_days": 1})}
    )
    data = load_replay_data(s)
    assert (len(data.history), len(data.live), data.labels) == (3, 3, [])
    assert {b.source for b in data.live} == {"csv"}


def test_subscription_backoff_and_fence() -> None:
    s = Settings(_env_file=None, symbols=["AAPL", "VOO"])
    assert subscription(s) == "AM.AAPL,AM.VOO,T.AAPL,T.VOO"
    assert subscription(s.model_copy(update={"symbols": ["*"]})) == "AM.*,T.*"
    waits = [backoff_s(a, RECONNECT_FIRST_S, RECONNECT_MAX_S) for a in range(12)]
    assert 0.25 <= waits[0] <= 0.5 and max(waits) <= RECONNECT_MAX_S
    assert waits[3] > waits[0] * 2  # grows (jitter is 0.5-1x)
    frame = '[{"ev":"T","sym":"A"},{"ev":"AM","s":120000},{"ev":"AM","s":60000}]'
    assert _first_bar_start(frame) == 60000
    assert _first_bar_start('[{"ev":"T"}]') is None and _first_bar_start('"AM" [') is None
