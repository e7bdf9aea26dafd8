"""`tickwatch backfill` against the replay server's REST endpoint, and the replay labels."""

from __future__ import annotations

import datetime as dt

import pytest
from producer_support import read_topic, replay_settings, running_replay
from pydantic import SecretStr

from producers import backfill
from producers.market_sim import recent_start_day, simulate
from producers.replay_feed import split_history
from producers.replay_server import publish_labels
from producers.rest import RestError
from tickwatch import bar_store
from tickwatch.schemas import AnomalyLabel, MinuteBar, decode
from tickwatch.topics import BARS, LABELS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_backfill_is_idempotent_and_survives_rate_limits(settings) -> None:
    sim = simulate(["AAPL", "MSFT"], days=3, seed=4, start_day=recent_start_day(3))
    data = split_history(sim.bars, sim.labels, history_days=2)
    # pages of 300 bars, so next_url is followed; the first 3 requests get HTTP 429
    s = replay_settings(settings).model_copy(update={"symbols": ["AAPL", "MSFT"]})
    with running_replay(s, data, rest_fail_first=3) as (server, bound):
        server.index.page_limit = 300
        first = backfill.run(
            bound, ["AAPL", "MSFT"], sim.trading_days[0], sim.trading_days[1], progress=False
        )
        again = backfill.run(
            bound, ["AAPL", "MSFT"], sim.trading_days[0], dt.date.today(), progress=False
        )
    assert server.rest_fail_first == 0  # the 429s were served, and the client waited them out
    assert first.published == len(data.history) == 2 * 2 * 390
    assert (again.published, again.already_stored) == (0, len(data.history))  # live not streamed
    topic = sorted(
        (decode(MinuteBar, m.value()) for m in read_topic(s, BARS)),
        key=lambda b: (b.start_ms, b.symbol),
    )
    assert [b.model_copy(update={"source": "replay"}) for b in topic] == data.history
    stored = bar_store.read_bars(bar_store.bars_root(s))
    assert stored.equals(bar_store.bars_to_frame(data.history))


def test_wrong_key_is_a_clear_rest_error(settings) -> None:
    sim = simulate(["AAPL"], days=2, seed=4, start_day=recent_start_day(2))
    data = split_history(sim.bars, sim.labels, history_days=1)
    s = replay_settings(settings, required_key=SecretStr("right"))
    with running_replay(s, data) as (_, bound):
        bound = bound.model_copy(
            update={
                "polygon": bound.polygon.model_copy(
                    update={
                        "api_key": SecretStr("wrong"),
                        "rest_url": f"http://127.0.0.1:{bound.replay.port}",
                    }
                )
            }
        )
        with pytest.raises(RestError, match="HTTP 401.*Unknown API Key"):
            backfill.run(bound, ["AAPL"], sim.trading_days[0], sim.trading_days[0], progress=False)


def test_replay_labels_go_to_csv_and_topic(settings) -> None:
    sim = simulate(["AAPL", "TSLA"], days=3, seed=6, start_day=recent_start_day(3))
    data = split_history(sim.bars, sim.labels, history_days=2)
    publish_labels(settings, data)
    publish_labels(settings, data)  # a restart rewrites the file without duplicating rows
    on_file = bar_store.read_labels(bar_store.labels_path(settings))
    assert on_file.reset_index(drop=True).equals(
        bar_store.labels_to_frame(sim.labels).reset_index(drop=True)
    )
    on_topic = {decode(AnomalyLabel, m.value()) for m in read_topic(settings, LABELS)}
    assert on_topic == set(sim.labels)
