"""A live terminal view: per symbol the last price and features, anomalies as they come."""

from __future__ import annotations

import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from ops.demo import dashboard_url
from tickwatch.kafka import consume_batch, make_consumer
from tickwatch.schemas import AnomalyEvent, FeatureVector, SchemaError, decode
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, FEATURES, topic_name

KEY_FEATURES = ("return_z", "volume_z_20", "vol_ratio_5", "relative_return_z")
SEVERITY_STYLE = {
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


class LiveState:
    """What the view shows, updated from the features and anomalies topics."""

    def __init__(self, max_anomalies: int = 12) -> None:
        self.latest: dict[str, FeatureVector] = {}
        self.anomalies: deque[AnomalyEvent] = deque(maxlen=max_anomalies)
        self.counts: dict[str, int] = {}
        self.bars = 0

    def add(self, topic_kind: str, value: bytes) -> AnomalyEvent | None:
        """Take one record; returns it if it is a new anomaly."""
        try:
            if topic_kind == "features":
                fv = decode(FeatureVector, value)
                self.latest[fv.symbol] = fv
                self.bars += 1
                return None
            ev = decode(AnomalyEvent, value)
        except SchemaError:
            return None  # the services dead-letter bad records; the view only shows good ones
        self.anomalies.appendleft(ev)
        self.counts[ev.symbol] = self.counts.get(ev.symbol, 0) + 1
        return ev


def render(state: LiveState, settings: Settings, problems: list[str]) -> Any:
    symbols = Table(title=f"Symbols ({state.bars} bars scored)", expand=True)
    for col in ("symbol", "bar (UTC)", "close", *KEY_FEATURES, "anomalies"):
        symbols.add_column(col, justify="right" if col != "symbol" else "left")
    for sym in sorted(state.latest):
        fv = state.latest[sym]
        symbols.add_row(
            sym,
            _ts(fv.bar_start_ms),
            f"{fv.close:,.2f}",
            *(f"{fv.features.get(k, 0.0):+.2f}" for k in KEY_FEATURES),
            str(state.counts.get(sym, 0)),
        )
    events = Table(title="Latest anomalies", expand=True)
    for col in ("bar (UTC)", "symbol", "severity", "models", "top reasons"):
        events.add_column(col)
    for ev in state.anomalies:
        models = ", ".join(
            f"{s.model} {s.score:.2f}/{s.threshold:.2f}" for s in ev.scores if s.flagged
        )
        reasons = "; ".join(f"{r.feature}={r.value:+.1f}" for r in ev.reasons[:3])
        events.add_row(
            _ts(ev.bar_start_ms),
            ev.symbol,
            f"[{SEVERITY_STYLE[ev.severity]}]{ev.severity}[/]",
            models,
            reasons,
        )
    dashboard = dashboard_url(settings)
    urls = (
        f"Dashboard {dashboard}  API docs {dashboard.removesuffix('/dashboard')}/docs  (key: "
        f"TICKWATCH_API__API_KEY)   Prometheus http://127.0.0.1:{settings.prometheus.port}"
        f"   MLflow http://127.0.0.1:{settings.mlflow.port}   Ctrl-C stops"
    )
    parts: list[Any] = [symbols, events, Panel(urls, title="tickwatch")]
    if problems:
        parts.append(
            Panel(f"stopped unexpectedly: {', '.join(problems)} (see .run/logs/)", style="red")
        )
    return Group(*parts)


def show(settings: Settings, pipeline: Any, duration_s: float | None = None) -> LiveState:
    """Follow the features and anomalies topics and redraw until Ctrl-C (or `duration_s`)."""
    consumer = make_consumer(
        settings, f"tickwatch-live-{uuid.uuid4().hex[:8]}", **{"auto.offset.reset": "latest"}
    )
    kinds = {
        topic_name(FEATURES, settings): "features",
        topic_name(ANOMALIES, settings): "anomalies",
    }
    consumer.subscribe(list(kinds))
    state = LiveState()
    deadline = time.monotonic() + duration_s if duration_s else None
    console = Console()
    try:
        if console.is_terminal:
            with Live(
                render(state, settings, []),
                console=console,
                refresh_per_second=4,
                vertical_overflow="visible",
            ) as live:
                while deadline is None or time.monotonic() < deadline:
                    for msg in consume_batch(consumer, 500, 0.25):
                        state.add(kinds[msg.topic() or ""], msg.value() or b"")
                    live.update(render(state, settings, pipeline.check()))
        else:  # a log or a pipe: one line per anomaly instead of redrawing a screen
            while deadline is None or time.monotonic() < deadline:
                for msg in consume_batch(consumer, 500, 0.25):
                    if state.add(kinds[msg.topic() or ""], msg.value() or b"") is not None:
                        console.print(anomaly_line(state.anomalies[0]), soft_wrap=True)
            console.print(render(state, settings, pipeline.check()))
    finally:
        consumer.close()
    return state


def anomaly_line(ev: AnomalyEvent) -> str:
    """One printable line: time, symbol, severity, flagged models and the top reasons."""
    models = ",".join(s.model for s in ev.scores if s.flagged) or "rules"
    reasons = "; ".join(f"{r.feature}={r.value:+.1f}" for r in ev.reasons[:3])
    return f"ANOMALY {_ts(ev.bar_start_ms)} {ev.symbol:<6} {ev.severity:<8} [{models}] {reasons}"
