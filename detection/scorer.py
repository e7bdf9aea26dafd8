"""Score feature vectors with the champion models: one call per model per batch, explained flags.

The API calls `Scorer.from_registry(settings).score(vectors)`; the worker keeps one SequenceBuffer
across batches so the LSTM sees each symbol's last `sequence_length` vectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from pydantic import ValidationError

from detection.detector import (
    CHANNELS,
    INPUTS,
    NEVER_MS,
    WINDOW,
    Detector,
    OnlineThreshold,
    combine,
    evidence_kinds,
    severity_index,
)
from detection.explain import ForestExplainer, top_reasons
from detection.models.iforest import NAME as IFOREST
from detection.models.iforest import iforest_scores
from detection.models.lstm_ae import NAME as LSTM
from detection.models.lstm_ae import autoencoder_errors, autoencoder_scores, tail_errors
from detection.registry import LoadedModel, champion_pair, load_pair
from detection.rules import fired_rules
from tickwatch.features import (
    ADDED_FEATURES,
    MODEL_FEATURES,
    active_calendar,
    compute_features_batch,
    opens_session,
    session_slot,
)
from tickwatch.schemas import (
    MINUTE_MS,
    SEVERITIES,
    AnomalyEvent,
    FeatureVector,
    ModelScore,
    Reason,
    Severity,
    make_event_id,
)
from tickwatch.settings import BETA_WINDOW, COOLDOWN_MINUTES, MARKET_SYMBOL, TOP_FEATURES, Settings

EVIDENCE = "evidence"  # the statistical channels, as an ensemble member


@lru_cache(maxsize=8192)
def _trading_day(bar_start_ms: int) -> int:
    return session_slot(bar_start_ms)[0]


@lru_cache(maxsize=8192)
def _minute(bar_start_ms: int) -> int:
    return session_slot(bar_start_ms)[1]


class SequenceBuffer:
    """Per symbol: the last N model-feature vectors (the LSTM's window), the last
    detector.WINDOW detector inputs (the evidence channels' window), its newest bar's start and
    its online alert threshold."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.rows: dict[str, np.ndarray] = {}  # symbol -> (length, features), newest last
        self.inputs: dict[str, np.ndarray] = {}  # symbol -> (WINDOW, INPUTS), newest last
        self.filled: dict[str, int] = {}
        self.last: dict[str, int] = {}  # symbol -> its newest bar_start_ms
        self.thresholds: dict[str, OnlineThreshold] = {}
        self.detector: Detector | None = None  # whose surprises the thresholds count

    def push(
        self, symbol: str, bar_start_ms: int, x: np.ndarray, inputs: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Append one vector; the full window ending here, or None while it fills.

        `inputs` (the detector inputs of the same bar) go to the symbol's channel window,
        `self.inputs[symbol]`."""
        rows = self.rows.get(symbol)
        if rows is None:
            rows = self.rows[symbol] = np.zeros((self.length, len(x)), dtype=np.float32)
        rows[:-1] = rows[1:]
        rows[-1] = x
        if inputs is not None:
            win = self.inputs.get(symbol)
            if win is None:
                win = self.inputs[symbol] = np.zeros((WINDOW, len(inputs)), dtype=np.float32)
            win[:-1] = win[1:]
            win[-1] = inputs
        filled = self.filled[symbol] = min(self.filled.get(symbol, 0) + 1, self.length)
        self.last[symbol] = bar_start_ms
        return rows.copy() if filled == self.length else None

    def threshold(self, symbol: str, detector: Detector) -> OnlineThreshold:
        """The symbol's online threshold (a new model pair starts every symbol afresh)."""
        if self.detector is not detector:
            self.thresholds.clear()
            self.detector = detector
        t = self.thresholds.get(symbol)
        if t is None:
            t = self.thresholds[symbol] = detector.new_threshold()
        return t

    def is_new(self, symbol: str, bar_start_ms: int) -> bool:
        """False for a duplicate or late vector (not after the symbol's newest)."""
        prev = self.last.get(symbol)
        return prev is None or bar_start_ms > prev

    def forget(self, symbol: str) -> None:
        """Drop a symbol's history (its partition moved to another worker)."""
        for d in (self.rows, self.inputs, self.filled, self.last, self.thresholds):
            d.pop(symbol, None)


class RawScore(NamedTuple):
    """One model's verdict on one row, before it becomes a ModelScore record."""

    model: str
    version: str
    score: float
    threshold: float
    flagged: bool


@dataclass(frozen=True)
class RowScore:
    """Both models' verdicts on one vector, the combined decision, severity and reasons."""

    symbol: str
    bar_start_ms: int
    close: float
    model_scores: tuple[RawScore, ...]
    flagged: bool
    severity: Severity | None
    reasons: list[Reason] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    best: float = 0.0  # the largest member surprise (log10 units), 0 where not eligible
    threshold: float = 0.0  # the symbol's threshold for this bar

    @property
    def scores(self) -> list[ModelScore]:
        """The per-model verdicts as wire records (built on demand: most rows never need them)."""
        return [
            ModelScore(
                model=s.model,
                version=s.version,
                score=s.score,
                threshold=s.threshold,
                flagged=s.flagged,
            )
            for s in self.model_scores
        ]


class Scorer:
    """The champion forest and autoencoder, the fitted detector, explainers and calibrations."""

    def __init__(
        self,
        iforest: LoadedModel,
        lstm: LoadedModel,
        top_k: int = TOP_FEATURES,
        detector: Detector | None = None,
    ) -> None:
        self.iforest, self.lstm, self.top_k = iforest, lstm, top_k
        self.length = int(lstm.metadata["sequence_length"])
        self.error_scale = np.asarray(lstm.metadata["error_scale"], dtype=np.float32)
        if detector is None:
            if "detector" not in iforest.metadata:
                raise ValueError(
                    f"{iforest.name} v{iforest.version} has no fitted detector: retrain it"
                )
            detector = Detector.from_dict(iforest.metadata["detector"])
        in_use = active_calendar().name
        if detector.calendar != in_use:
            raise ValueError(
                f"{iforest.name} v{iforest.version} was fitted on the {detector.calendar} "
                f"calendar, this process uses {in_use} (features.calendar): set it or retrain"
            )
        self.detector = detector
        self.explainer = ForestExplainer(iforest.model)
        self.version = f"{IFOREST}-v{iforest.version}+{LSTM}-v{lstm.version}"

    @classmethod
    def from_registry(cls, settings: Settings) -> Scorer:
        """Load the versions the champion alias points at (raises if none is registered)."""
        versions = champion_pair(settings)
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

    def warm_up(self) -> None:
        """Run each model once on zeros before serving.

        Keras traces its predict function on the first batch and once more, shape-relaxed, on
        the first batch of another size (~300 ms each on 2 cores); without this both traces
        land on live bars, the first ones a symbol's sequence fills. Two sizes leave the
        relaxed trace, which every later batch size reuses.
        """
        width = len(MODEL_FEATURES)
        for n in (1, 2):
            autoencoder_errors(self.lstm.model, np.zeros((n, self.length, width), np.float32))
        rows = np.zeros((2, width))
        iforest_scores(self.iforest.model, rows)
        self.explainer.contributions(rows)

    def score(
        self, vectors: Sequence[FeatureVector], buffer: SequenceBuffer | None = None
    ) -> list[RowScore]:
        """Score vectors in order; history comes from `buffer` (a fresh one if None).

        Vectors must be new for their symbol (see SequenceBuffer.is_new); the worker filters
        duplicates first. Each bar's score is the largest surprise over the evidence channels,
        or the models' where both agree (detector.combine); it is flagged above its symbol's
        online threshold.
        """
        if not vectors:
            return []
        buffer = buffer or SequenceBuffer(self.length)
        det = self.detector
        n = len(vectors)
        x = feature_matrix(vectors)
        inputs = input_matrix(vectors)
        windows = np.empty((n, self.length, x.shape[1]), dtype=np.float32)
        in_windows = np.empty((n, WINDOW, inputs.shape[1]), dtype=np.float32)
        has_window, fresh = np.zeros(n, bool), np.zeros(n, bool)
        for i, v in enumerate(vectors):
            # a symbol's first vector in this buffer (a start or a restart partway through a
            # session) has no window behind it: its channels would compare it with nothing
            fresh[i] = v.symbol not in buffer.last
            window = buffer.push(v.symbol, v.bar_start_ms, x[i], inputs[i])
            in_windows[i] = buffer.inputs[v.symbol]
            if window is not None:
                windows[i] = window
                has_window[i] = True
        if_scores = iforest_scores(self.iforest.model, x)
        errors = np.full(x.shape, np.nan, dtype=np.float32)
        if has_window.any():
            errors[has_window] = autoencoder_errors(self.lstm.model, windows[has_window])
        ae_scores = np.full(n, np.nan)
        ae_scores[has_window] = autoencoder_scores(errors[has_window], self.error_scale)
        symbols = np.array([v.symbol for v in vectors])
        minutes = np.array([_minute(v.bar_start_ms) for v in vectors])
        surprise = det.surprises(
            in_windows, symbols, minutes, np.column_stack([if_scores, ae_scores])
        )
        eligible = np.array([v.warm for v in vectors], dtype=bool) & ~fresh
        if det.skip_open:  # not a session's first bar: its `session_open` feature, as in training
            eligible &= ~np.array([opens_session(v.features) for v in vectors], dtype=bool)
        best = np.where(eligible, combine(surprise), 0.0)
        kinds = evidence_kinds(surprise)
        thresholds = np.array(
            [
                buffer.threshold(v.symbol, det).observe(
                    float(b), v.bar_start_ms, _trading_day(v.bar_start_ms), int(k)
                )
                for v, b, k in zip(vectors, best.tolist(), kinds.tolist(), strict=True)
            ]
        )
        flags = eligible & (best > thresholds)
        member_flags = eligible[:, None] & (surprise > thresholds[:, None])
        # the models decide together (see detector.combine): each is flagged when both are
        models = member_flags[:, len(CHANNELS) :]
        member_flags[:, len(CHANNELS) :] = models.all(axis=1, keepdims=True)
        severity = severity_index(best - thresholds)
        flagged = np.flatnonzero(flags)
        shap_rows = dict(
            zip(flagged.tolist(), self.explainer.contributions(x[flagged]), strict=True)
        )
        i_if, i_ae = len(CHANNELS), len(CHANNELS) + 1
        out = []
        for i, v in enumerate(vectors):
            t = float(thresholds[i])
            scores: tuple[RawScore, ...] = (
                RawScore(
                    IFOREST,
                    self.iforest.version,
                    float(surprise[i, i_if]),
                    t,
                    bool(member_flags[i, i_if]),
                ),
            )
            if has_window[i]:
                scores += (
                    RawScore(
                        LSTM,
                        self.lstm.version,
                        float(surprise[i, i_ae]),
                        t,
                        bool(member_flags[i, i_ae]),
                    ),
                )
            scores += (
                RawScore(
                    EVIDENCE,
                    self.iforest.version,
                    float(surprise[i, : len(CHANNELS)].max()),
                    t,
                    bool(member_flags[i, : len(CHANNELS)].any()),
                ),
            )
            if not flags[i]:
                out.append(
                    RowScore(
                        v.symbol,
                        v.bar_start_ms,
                        v.close,
                        scores,
                        False,
                        None,
                        best=float(best[i]),
                        threshold=t,
                    )
                )
                continue
            evidence = surprise[i, : len(CHANNELS)]  # value = contribution = the surprise
            reasons = top_reasons(evidence, evidence, EVIDENCE, self.top_k, CHANNELS)
            reasons += top_reasons(x[i], shap_rows[i], IFOREST, self.top_k)
            if has_window[i]:
                reasons += top_reasons(
                    x[i], tail_errors(errors[i], self.error_scale), LSTM, self.top_k
                )
            out.append(
                RowScore(
                    v.symbol,
                    v.bar_start_ms,
                    v.close,
                    scores,
                    True,
                    SEVERITIES[int(severity[i])],
                    reasons,
                    fired_rules(v.features),
                    best=float(best[i]),
                    threshold=t,
                )
            )
        return out

    def to_event(self, row: RowScore, detected_at_ms: int) -> AnomalyEvent:
        """The event for a flagged row; the id is deterministic in (symbol, bar, versions)."""
        assert row.flagged and row.severity is not None
        return AnomalyEvent(
            event_id=make_event_id(row.symbol, row.bar_start_ms, self.version),
            symbol=row.symbol,
            bar_start_ms=row.bar_start_ms,
            detected_at_ms=detected_at_ms,
            severity=row.severity,
            close=row.close,
            scores=row.scores,
            reasons=row.reasons,
            rules=row.rules,
        )


# what scoring reads of a vector, less the features an older vector may lack (ADDED_FEATURES,
# read as their defaults): a vector without one of these cannot be scored
REQUIRED_FEATURES: tuple[str, ...] = tuple(
    dict.fromkeys(k for k in (*MODEL_FEATURES, *INPUTS) if k not in ADDED_FEATURES)
)


def input_matrix(vectors: Sequence[FeatureVector]) -> np.ndarray:
    """detector.INPUTS of each vector as float32 (n, inputs); a feature added after the vector
    was written (ADDED_FEATURES) reads its default, any other missing one raises KeyError."""
    return np.array(
        [
            [f[k] if k in f else ADDED_FEATURES[k] for k in INPUTS]
            for f in (v.features for v in vectors)
        ],
        dtype=np.float32,
    )


def feature_matrix(vectors: Sequence[FeatureVector]) -> np.ndarray:
    """MODEL_FEATURES of each vector as float32 (n, features); a missing feature raises KeyError."""
    return np.array([[v.features[k] for k in MODEL_FEATURES] for v in vectors], dtype=np.float32)


class Cooldown:
    """One event per ongoing anomaly: a flag fires only if the symbol's previous flag is older."""

    def __init__(self, minutes: int) -> None:
        self.window_ms = minutes * MINUTE_MS
        self.last_flag: dict[str, int] = {}
        self.counted_ms: dict[str, int] = {}  # per symbol: bars up to here are in a snapshot

    def resume(self, symbol: str, threshold: OnlineThreshold) -> None:
        """Continue a symbol from its threshold's snapshot: the snapshot's last flag is the
        symbol's, and the bars it already counted are never admitted again. Re-scored after a
        restart, such a bar meets the session's later threshold (escalated by the flags after
        it, or re-solved at a new session), not the one it met, so its flag would say nothing
        about whether the next one continues an event."""
        self.counted_ms[symbol] = threshold.last_ms
        last = threshold.last_flag_ms
        if last is None:
            self.last_flag.pop(symbol, None)
        else:
            self.last_flag[symbol] = last

    def admit(self, symbol: str, bar_start_ms: int) -> bool:
        """Record a flagged bar; True if it starts a new event."""
        if bar_start_ms <= self.counted_ms.get(symbol, NEVER_MS):
            return False
        prev = self.last_flag.get(symbol)
        self.last_flag[symbol] = bar_start_ms
        return prev is None or bar_start_ms - prev > self.window_ms

    def forget(self, symbol: str) -> None:
        self.last_flag.pop(symbol, None)
        self.counted_ms.pop(symbol, None)


class NonFiniteFeatures(ValueError):
    """A bar whose features are not all finite: its prices are valid one by one but so far apart
    (1e-300 against 1e300) that a ratio overflows. The stream sends such a row to the dead-letter
    topic; a caller scoring bars it sent is told which bar it was."""


def vectors_from_bars(
    bars: Iterable[Any], market_symbol: str = MARKET_SYMBOL, beta_window: int = BETA_WINDOW
) -> list[FeatureVector]:
    """Feature vectors for bars, computed exactly as the streaming agents do (NonFiniteFeatures
    names the first bar FeatureVector refuses: its features are not all finite)."""
    vectors = []
    for b, f, w in compute_features_batch(bars, market_symbol, beta_window):
        try:
            vector = FeatureVector(
                symbol=b.symbol,
                bar_start_ms=int(b.start_ms),
                close=float(b.close),
                volume=float(b.volume),
                features=f,
                warm=w,
            )
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
                for e in exc.errors()
            )
            raise NonFiniteFeatures(f"{b.symbol} bar {int(b.start_ms)}: {reasons}") from exc
        vectors.append(vector)
    return vectors


def score_bars(
    scorer: Scorer,
    bars: Iterable[Any],
    cooldown_minutes: int = COOLDOWN_MINUTES,
    market_symbol: str = MARKET_SYMBOL,
    detected_at_ms: int = 0,
) -> list[AnomalyEvent | None]:
    """One entry per scored bar (feature order): its event if it opens one, else None."""
    vectors = vectors_from_bars(bars, market_symbol)
    rows = scorer.score(vectors)
    cooldown = Cooldown(cooldown_minutes)
    return [
        scorer.to_event(r, detected_at_ms or r.bar_start_ms)
        if r.flagged and cooldown.admit(r.symbol, r.bar_start_ms)
        else None
        for r in rows
    ]
