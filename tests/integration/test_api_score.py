"""`POST /v1/score` with real champion models (the model tests' small trained registry)."""

from __future__ import annotations

import httpx
import pytest
from api_support import api_server
from model_support import held_out, with_models

from detection.scorer import Scorer, vectors_from_bars
from tickwatch.schemas import make_event_id
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
KEY = "dev-key-change-me"
HOUR = 3_600_000


def window_around_a_labelled_anomaly() -> tuple[list, object]:
    """The labelled symbol's and VOO's bars of one day, from the open to just after the label."""
    sim = held_out()
    label = next(
        lb for lb in sim.labels if lb.symbol != "VOO" and lb.start_ms % 86_400_000 >= 16 * HOUR
    )  # at least 2.5 h after the 13:30 UTC open: features are warm
    day = label.start_ms // 86_400_000
    bars = [
        b
        for b in sim.bars
        if b.start_ms // 86_400_000 == day
        and b.symbol in (label.symbol, "VOO")
        and b.start_ms <= label.end_ms + 600_000
    ]
    return bars, label


def test_score_a_window_of_bars_with_explanations(settings: Settings, tmp_path) -> None:
    s = with_models(settings, tmp_path)
    bars, label = window_around_a_labelled_anomaly()
    body = {"bars": [b.model_dump() for b in bars]}
    with (
        api_server(s) as url,
        httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=300) as client,
    ):
        resp = client.post("/v1/score", json=body)
        assert resp.status_code == 200, resp.text
        shuffled = client.post("/v1/score", json={"bars": body["bars"][::-1]})
        assert shuffled.status_code == 422 and "increasing start_ms" in shuffled.json()["message"]
        # valid prices, but 1e308 apart from 1e-300 in one bar: its range overflows. The caller
        # learns which bar it was (a 500 before)
        tiny = 1e-300
        wild = dict(body["bars"][-1], high=1e308, low=tiny, open=tiny, close=tiny, vwap=tiny)
        unscorable = client.post("/v1/score", json={"bars": [*body["bars"][:-1], wild]})
        assert unscorable.status_code == 422, unscorable.text
        assert f"{wild['symbol']} bar {wild['start_ms']}" in unscorable.json()["message"]

    scorer = Scorer.from_registry(s)
    expected = scorer.score(vectors_from_bars(bars, s.features.market_symbol))
    got = resp.json()
    assert got["model_version"] == scorer.version
    assert [
        (r["symbol"], r["bar_start_ms"], r["flagged"], r["severity"]) for r in got["results"]
    ] == [(r.symbol, r.bar_start_ms, r.flagged, r.severity) for r in expected]
    flagged = [r for r in got["results"] if r["flagged"]]
    assert any(
        label.start_ms <= r["bar_start_ms"] <= label.end_ms + 300_000
        and r["symbol"] == label.symbol
        for r in flagged
    )
    for r in flagged:
        assert r["reasons"] and {s["model"] for s in r["scores"]} == {
            "iforest",
            "lstm_ae",
            "evidence",
        }
        assert r["event_id"] == make_event_id(r["symbol"], r["bar_start_ms"], scorer.version)
