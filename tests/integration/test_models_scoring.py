"""The scorer on the registered champions: model behaviour, batch == per row, events from bars."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from model_support import held_out, held_out_labels, with_models

from detection.scorer import Scorer, SequenceBuffer, score_bars, vectors_from_bars
from tickwatch.schemas import FeatureVector

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def scorer(settings, tmp_path) -> Scorer:
    return Scorer.from_registry(with_models(settings, tmp_path))


@lru_cache(maxsize=1)
def _held_out_vectors() -> list[FeatureVector]:
    return vectors_from_bars(held_out().bars)


def _day_vectors(day: int) -> list[FeatureVector]:
    """The held-out vectors up to the end of trading day `day` (0-based)."""
    vectors = _held_out_vectors()
    days = sorted({v.bar_start_ms // 86_400_000 for v in vectors})
    return [v for v in vectors if v.bar_start_ms // 86_400_000 <= days[day]]


def test_ten_sigma_jump_outscores_a_calm_bar(scorer):
    history = [v for v in _day_vectors(1) if v.symbol == "MSFT"]
    labelled = [(lb.start_ms, lb.end_ms) for lb in held_out().labels if lb.symbol == "MSFT"]
    calm = next(
        v
        for v in reversed(history)
        if v.warm
        and all(not (s - 30 * 60_000 <= v.bar_start_ms <= e + 30 * 60_000) for s, e in labelled)
        and abs(v.features["return_z"]) < 1
    )
    before = [v for v in history if v.bar_start_ms < calm.bar_start_ms]
    jump = calm.model_copy(
        update={"features": {**calm.features, "return_z": 10.0, "relative_return_z": 10.0}}
    )
    results = {}
    for name, last in (("calm", calm), ("jump", jump)):
        buffer = SequenceBuffer(scorer.length)
        scorer.score(before, buffer)
        results[name] = scorer.score([last], buffer)[0]
    calm_s = {s.model: s.score for s in results["calm"].scores}
    jump_s = {s.model: s.score for s in results["jump"].scores}
    assert jump_s["iforest"] > calm_s["iforest"]
    assert jump_s["lstm_ae"] > calm_s["lstm_ae"]
    assert results["jump"].flagged and not results["calm"].flagged
    assert "return_z" in {r.feature for r in results["jump"].reasons}


def test_warm_up_leaves_no_model_tracing_to_live_batches(scorer):
    scorer.warm_up()
    predict = scorer.lstm.model.predict_function  # Keras's traced predict step
    traced = predict.experimental_get_tracing_count()
    vectors = _day_vectors(1)
    buffer = SequenceBuffer(scorer.length)
    # batches of sizes the warm-up never used, with full sequences: every one calls the LSTM
    for part in (vectors[:-10], vectors[-10:-7], vectors[-7:]):
        scorer.score(part, buffer)
    assert scorer.lstm.model.predict_function is predict
    assert predict.experimental_get_tracing_count() == traced


def test_batch_scores_equal_row_by_row_scores(scorer):
    vectors = _day_vectors(1)
    label = next(lb for lb in held_out().labels if lb.start_ms > vectors[400].bar_start_ms)
    cut = next(i for i, v in enumerate(vectors) if v.bar_start_ms >= label.start_ms - 10 * 60_000)
    prime, probe = vectors[:cut], vectors[cut : cut + 120]
    batch_buf, row_buf = SequenceBuffer(scorer.length), SequenceBuffer(scorer.length)
    scorer.score(prime, batch_buf)
    scorer.score(prime, row_buf)
    batch = scorer.score(probe, batch_buf)
    rows = [scorer.score([v], row_buf)[0] for v in probe]
    assert any(r.flagged for r in batch)
    for b, r in zip(batch, rows, strict=True):
        assert (b.symbol, b.bar_start_ms, b.flagged, b.severity) == (
            r.symbol,
            r.bar_start_ms,
            r.flagged,
            r.severity,
        )
        np.testing.assert_allclose(
            [s.score for s in b.scores], [s.score for s in r.scores], rtol=1e-4, atol=1e-6
        )
        assert [x.feature for x in b.reasons] == [x.feature for x in r.reasons]


def test_score_bars_gives_one_deterministic_event_per_anomaly(scorer):
    end = _day_vectors(1)[-1].bar_start_ms
    bars = [b for b in held_out().bars if b.start_ms <= end]
    first = score_bars(scorer, bars)
    second = score_bars(scorer, bars)
    assert len(first) == len(bars)
    events = [e for e in first if e is not None]
    assert events and [e.event_id for e in events] == [e.event_id for e in second if e is not None]
    assert len({e.event_id for e in events}) == len(events)
    for e in events:  # explained: reasons from the forest, and the autoencoder once warm
        assert {r.model for r in e.reasons} >= {"iforest"}
        assert all(s.version == "1" for s in e.scores)
    by_symbol: dict[str, list[int]] = {}
    for e in events:
        by_symbol.setdefault(e.symbol, []).append(e.bar_start_ms)
    labels = held_out_labels()
    long_events = labels[(labels["end"] - labels["start"]) >= 5 * 60_000]
    for lab in long_events.itertuples():  # one ongoing anomaly -> at most one event per cooldown
        inside = [t for t in by_symbol.get(lab.symbol, []) if lab.start <= t <= lab.end]
        assert len(inside) <= 1 + (lab.end - lab.start) // (5 * 60_000 + 60_000)
