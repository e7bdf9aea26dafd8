"""The replay server's REST aggregates: Polygon's paging, date ranges, only bars already served."""

from __future__ import annotations

from urllib.parse import urlsplit

from producers.market_sim import simulate
from producers.replay_feed import AggregateState, split_history
from producers.replay_rest import AggregatesIndex

BASE = "http://127.0.0.1:1"


def _index():
    sim = simulate(["AAPL", "VOO"], days=3, seed=8)
    data = split_history(sim.bars, sim.labels, history_days=2)
    index = AggregatesIndex(data.history + data.live)
    index.visible_until = data.history[-1].start_ms
    return sim, data, index


def test_pages_follow_next_url_until_the_served_bars_end() -> None:
    sim, data, index = _index()
    target = (
        f"/v2/aggs/ticker/AAPL/range/1/minute/{sim.trading_days[0]}/"
        f"{sim.trading_days[2]}?limit=500&sort=asc&apiKey=k"
    )
    got = []
    while target:
        status, body = index.handle(target, BASE)
        assert status == 200 and body["status"] == "OK"
        got += [r["t"] for r in body["results"]]
        nxt = body.get("next_url")
        assert nxt is None or "apiKey" not in nxt
        target = nxt and (urlsplit(nxt).path + "?" + urlsplit(nxt).query)
    assert got == [b.start_ms for b in data.history if b.symbol == "AAPL"]  # live not yet served
    index.visible_until = data.live[5 * 2].start_ms  # five live minutes streamed
    _, body = index.handle(
        f"/v2/aggs/ticker/AAPL/range/1/minute/{data.live[0].start_ms}/{data.live[-1].start_ms}",
        BASE,
    )
    assert [r["t"] for r in body["results"]] == [
        b.start_ms for b in data.live[:12] if b.symbol == "AAPL"
    ]


def test_one_day_descending_and_errors() -> None:
    sim, data, index = _index()
    day = sim.trading_days[1]
    _, body = index.handle(f"/v2/aggs/ticker/VOO/range/1/minute/{day}/{day}?sort=desc", BASE)
    assert body["resultsCount"] == 390 and body["results"][0]["t"] > body["results"][-1]["t"]
    row = body["results"][-1]
    assert set(row) == {"v", "vw", "o", "c", "h", "l", "t", "n"}
    assert index.handle("/v2/aggs/ticker/VOO/range/5/minute/2025-03-03/2025-03-04", BASE)[0] == 400
    assert index.handle("/v2/aggs/ticker/VOO/range/1/minute/nope/2025-03-04", BASE)[0] == 400
    assert index.handle("/v3/trades/VOO", BASE)[0] == 404
    assert (
        index.handle("/v2/aggs/ticker/ZZZ/range/1/minute/2025-03-03/2025-03-04", BASE)[1][
            "resultsCount"
        ]
        == 0
    )


def test_am_events_carry_day_totals() -> None:
    _, data, _ = _index()
    state = AggregateState()
    day = [b for b in data.live if b.symbol == "AAPL"]
    events = [state.am_event(b) for b in day[:3]]
    assert [e["s"] for e in events] == [b.start_ms for b in day[:3]]
    assert all(e["e"] - e["s"] == 60_000 for e in events)
    assert events[2]["av"] == sum(b.volume for b in day[:3])
    assert {e["op"] for e in events} == {day[0].open}
    assert round(events[0]["v"] / events[0]["z"]) == day[0].transactions
