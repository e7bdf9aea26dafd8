"""Validation without labels: anomalies of every kind injected into a copy of the user's own
validation days, recall per kind measured there, the alert rate on the untouched days.

Real history has no labels, so an F1 on it is 0 against 0 and cannot choose a champion. The
injected copy can: the same bars, the same warm-up, anomalies of known kind and place. Both the
new pair and the champion are scored on the same copy (as the stream would score it) and the
one that finds more of them at its own alert rate is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from detection.scorer import Scorer
from model_workers.evaluation import EventMetrics, alerts_from_flags
from model_workers.fit import evaluate_frame
from tickwatch.anomalies import inject_bars
from tickwatch.features import session_slot
from tickwatch.settings import Settings

SEED = 20_251  # the injected copy is the same for every pair compared on one history


@dataclass(frozen=True)
class InjectedValidation:
    """One pair's verdicts on a history's validation days."""

    injected: EventMetrics  # against the injected anomalies (recall per kind, F1)
    alerts_per_session: float  # alert events per symbol-session on the untouched days
    sessions: int  # symbol-sessions of the validation days

    def row(self) -> dict[str, float]:
        """Flat figures for MLflow and the logs."""
        out = {
            "injected_f1": self.injected.f1,
            "injected_recall": self.injected.recall,
            "injected_precision": self.injected.precision,
            "untouched_alerts_per_session": self.alerts_per_session,
        }
        out.update({f"injected_recall_{k}": v for k, v in self.injected.recall_by_type.items()})
        return {k: float(v) for k, v in out.items() if np.isfinite(v)}


def validation_split(bars: list, fraction: float = 0.3) -> tuple[list, list]:
    """(earlier bars, the last `fraction` of the sessions): the days a fit held out."""
    days = sorted({session_slot(int(b.start_ms))[0] for b in bars})
    if len(days) < 2:
        cut_ms = int(np.quantile([int(b.start_ms) for b in bars], 1 - fraction))
        return [b for b in bars if b.start_ms < cut_ms], [b for b in bars if b.start_ms >= cut_ms]
    cut = days[-max(1, round(len(days) * fraction))]
    early = [b for b in bars if session_slot(int(b.start_ms))[0] < cut]
    return early, [b for b in bars if session_slot(int(b.start_ms))[0] >= cut]


def injected_validation(
    scorer: Scorer, warm: list, validation: list, settings: Settings
) -> InjectedValidation:
    """Score the untouched validation days and an injected copy of them after `warm` (the
    earlier history), as the stream would."""
    from model_workers.backtest import scored_frame

    cooldown = settings.model.cooldown_minutes
    clean = scored_frame(scorer, validation, settings, warm)
    events = alerts_from_flags(
        clean["symbol"].to_numpy(),
        clean["bar_start_ms"].to_numpy(),
        clean["is_anomaly"].to_numpy(bool),
        cooldown,
    )
    days = clean["bar_start_ms"].map(lambda t: session_slot(int(t))[0])
    sessions = int(pd.MultiIndex.from_arrays([clean["symbol"], days]).nunique())
    copy, injected = inject_bars(validation, SEED, settings.features.market_symbol)
    labels = pd.DataFrame(
        [(i.symbol, i.start_ms, i.end_ms, i.kind) for i in injected],
        columns=["symbol", "start", "end", "type"],
    )
    df = scored_frame(scorer, copy, settings, warm)
    return InjectedValidation(
        evaluate_frame(df, df["is_anomaly"].to_numpy(bool), labels, cooldown),
        float(events.sum()) / max(sessions, 1),
        sessions,
    )
