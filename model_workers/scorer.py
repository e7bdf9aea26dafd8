"""Score feature vectors with the champion models: one call per model per batch, explained flags.

The API calls `Scorer.from_registry(settings).score(vectors)`; the worker keeps one SequenceBuffer
across batches so the LSTM sees each symbol's last `sequence_length` vectors.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_workers.ensemble import SEVERITIES, decide
from model_workers.explain import ForestExplainer, top_reasons
from model_workers.models.iforest import NAME as IFOREST
from model_workers.models.iforest import iforest_scores
from model_workers.models.lstm_ae import NAME as LSTM
from model_workers.models.lstm_ae import autoencoder_errors, autoencoder_scores, tail_errors
from model_workers.registry import LoadedModel, champion_versions, load_pair
from model_workers.rules import fired_rules
from tickwatch.features import MODEL_FEATURES, compute_features_batch, session_slot
from tickwatch.schemas import (
    AnomalyEvent,
    FeatureVector,
    ModelScore,
    Reason,
    Severity,
    make_event_id,
)
from tickwatch.settings import Settings


class SequenceBuffer:
    """Each symbol's last N model-feature vectors and the trading day of its newest bar."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.rows: dict[str, deque[np.ndarray]] = {}
        self.last: dict[str, tuple[int, int]] = {}  # symbol -> (bar_start_ms, trading day)

    def push(self, symbol: str, bar_start_ms: int, x: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """Append one vector; (full window ending here or None, is it the session's first bar)."""
        day = session_slot(bar_start_ms)[0]
        prev = self.last.get(symbol)
        rows = self.rows.setdefault(symbol, deque(maxlen=self.length))
        rows.append(x)
        self.last[symbol] = (bar_start_ms, day)
        window = np.stack(rows) if len(rows) == self.length else None
        return window, prev is None or prev[1] != day

    def is_new(self, symbol: str, bar_start_ms: int) -> bool:
        """False for a duplicate or late vector (not after the symbol's newest)."""
        prev = self.last.get(symbol)
        return prev is None or bar_start_ms > prev[0]


@dataclass(frozen=True)
class RowScore:
    """Both models' verdicts on one vector, the combined decision, severity and reasons."""

    symbol: str
    bar_start_ms: int
    close: float
    scores: list[ModelScore]
    flagged: bool
    severity: Severity | None
    reasons: list[Reason] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


class Scorer:
    """The champion forest and autoencoder, their explainers and calibrations."""

    def __init__(self, iforest: LoadedModel, lstm: LoadedModel, top_k: int = 3) -> None:
        self.iforest, self.lstm, self.top_k = iforest, lstm, top_k
        self.length = int(lstm.metadata["sequence_length"])
        self.error_scale = np.asarray(lstm.metadata["error_scale"], dtype=np.float32)
        self.explainer = ForestExplainer(iforest.model)
        self.version = f"{IFOREST}-v{iforest.version}+{LSTM}-v{lstm.version}"

    @classmethod
    def from_registry(cls, settings: Settings) -> Scorer:
        """Load the versions the champion alias points at (raises if none is registered)."""
        versions = champion_versions(settings)
        if versions is None:
            raise LookupError("no champion registered yet: run `tickwatch train` first")
        return cls.from_versions(settings, versions)

    @classmethod
    def from_versions(cls, settings: Settings, versions: tuple[str, str]) -> Scorer:
        """Load a given (forest, autoencoder) version pair."""
        return cls(*load_pair(settings, versions), top_k=settings.model.top_features)

    @property
    def versions(self) -> tuple[str, str]:
        return self.iforest.version, self.lstm.version

    def score(self, vectors: Sequence[FeatureVector],
              buffer: SequenceBuffer | None = None) -> list[RowScore]:
        """Score vectors in order; history comes from `buffer` (a fresh one if None).

        Vectors must be new for their symbol (see SequenceBuffer.is_new); the worker filters
        duplicates first.
        """
        if not vectors:
            return []
        buffer = buffer or SequenceBuffer(self.length)
        x = feature_matrix(vectors)
        windows, has_window, opens = [], np.zeros(len(vectors), bool), np.zeros(len(vectors), bool)
        for i, v in enumerate(vectors):
            window, opens[i] = buffer.push(v.symbol, v.bar_start_ms, x[i])
            if window is not None:
                windows.append(window)
                has_window[i] = True
        if_scores = iforest_scores(self.iforest.model, x)
        errors = np.full(x.shape, np.nan, dtype=np.float32)
        if windows:
            errors[has_window] = autoencoder_errors(self.lstm.model, np.stack(windows))
        ae_scores = np.full(len(x), np.nan)
        ae_scores[has_window] = autoencoder_scores(errors[has_window], self.error_scale)
        warm = np.array([v.warm for v in vectors])
        log_return = np.array([v.features.get("log_return", 0.0) for v in vectors])
        d = decide(if_scores, ae_scores, self.iforest.calibration, self.lstm.calibration,
                   warm & ~opens, log_return)
        flagged = np.flatnonzero(d.flagged)
        shap_rows = dict(zip(flagged, self.explainer.contributions(x[flagged]), strict=True))
        out = []
        for i, v in enumerate(vectors):
            scores = [
                ModelScore(model=IFOREST, version=self.iforest.version, score=float(if_scores[i]),
                           threshold=self.iforest.calibration.threshold,
                           flagged=bool(d.iforest_flag[i])),
            ]
            if has_window[i]:
                scores.append(ModelScore(
                    model=LSTM, version=self.lstm.version, score=float(ae_scores[i]),
                    threshold=self.lstm.calibration.threshold, flagged=bool(d.lstm_flag[i])))
            if not d.flagged[i]:
                out.append(RowScore(v.symbol, v.bar_start_ms, v.close, scores, False, None))
                continue
            reasons = top_reasons(x[i], shap_rows[i], IFOREST, self.top_k)
            if has_window[i]:
                reasons += top_reasons(x[i], tail_errors(errors[i], self.error_scale), LSTM,
                                       self.top_k)
            out.append(RowScore(v.symbol, v.bar_start_ms, v.close, scores, True,
                                SEVERITIES[int(d.severity[i])], reasons,
                                fired_rules(v.features)))
        return out

    def to_event(self, row: RowScore, detected_at_ms: int) -> AnomalyEvent:
        """The event for a flagged row; the id is deterministic in (symbol, bar, versions)."""
        assert row.flagged and row.severity is not None
        return AnomalyEvent(
            event_id=make_event_id(row.symbol, row.bar_start_ms, self.version),
            symbol=row.symbol, bar_start_ms=row.bar_start_ms, detected_at_ms=detected_at_ms,
            severity=row.severity, close=row.close, scores=row.scores, reasons=row.reasons,
            rules=row.rules,
        )


def feature_matrix(vectors: Sequence[FeatureVector]) -> np.ndarray:
    """MODEL_FEATURES of each vector as float32 (n, features); a missing feature raises KeyError."""
    return np.array([[v.features[k] for k in MODEL_FEATURES] for v in vectors], dtype=np.float32)


class Cooldown:
    """One event per ongoing anomaly: a flag fires only if the symbol's previous flag is older."""

    def __init__(self, minutes: int) -> None:
        self.window_ms = minutes * 60_000
        self.last_flag: dict[str, int] = {}

    def admit(self, symbol: str, bar_start_ms: int) -> bool:
        """Record a flagged bar; True if it starts a new event."""
        prev = self.last_flag.get(symbol)
        self.last_flag[symbol] = bar_start_ms
        return prev is None or bar_start_ms - prev > self.window_ms


def vectors_from_bars(bars: Iterable[Any], market_symbol: str = "VOO",
                      beta_window: int = 60) -> list[FeatureVector]:
    """Feature vectors for bars, computed exactly as the streaming agents do."""
    return [FeatureVector(symbol=b.symbol, bar_start_ms=int(b.start_ms), close=float(b.close),
                          volume=float(b.volume), features=f, warm=w)
            for b, f, w in compute_features_batch(bars, market_symbol, beta_window)]


def score_bars(scorer: Scorer, bars: Iterable[Any], cooldown_minutes: int = 5,
               market_symbol: str = "VOO", detected_at_ms: int = 0) -> list[AnomalyEvent | None]:
    """One entry per scored bar (feature order): its event if it opens one, else None."""
    vectors = vectors_from_bars(bars, market_symbol)
    rows = scorer.score(vectors)
    cooldown = Cooldown(cooldown_minutes)
    return [scorer.to_event(r, detected_at_ms or r.bar_start_ms)
            if r.flagged and cooldown.admit(r.symbol, r.bar_start_ms) else None for r in rows]
