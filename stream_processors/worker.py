"""Run the features service: `tickwatch features` (one worker, Faust or batch engine; start more
to scale out)."""

from __future__ import annotations

import logging

import faust

from feature_repo.feature_store import get_store
from stream_processors.agents import STAGE, register
from stream_processors.app import create_app, default_app_id
from stream_processors.feast_push import OnlineWriter
from stream_processors.liveness import register_stall_guard
from tickwatch.metrics import serve_metrics
from tickwatch.settings import Settings
from tickwatch.topic_check import require_topics
from tickwatch.topics import BARS, DEAD_LETTER, FEATURES, MARKET_RETURNS, TRADES, topic_name

log = logging.getLogger(__name__)


def features_group(settings: Settings, engine: str | None = None) -> str:
    """The features stage's consumer group for `engine` (default: `features.engine`)."""
    if (engine or settings.features.engine) == "batch":
        from stream_processors.batch_worker import batch_group

        return batch_group(settings)
    return default_app_id(settings)


def build(
    settings: Settings, bars_from_trades: bool | None = None, web_port: int | None = None
) -> faust.App:
    """The configured Faust app with its agents (trades -> bars only if asked or AM is off)."""
    app = create_app(settings, web_port=web_port)
    register(app, settings, OnlineWriter(get_store(settings), settings))
    register_stall_guard(app, topic_name(BARS, settings), STAGE)
    if bars_from_trades is None:
        bars_from_trades = "AM" not in settings.polygon.channels
    if bars_from_trades:
        from stream_processors.bar_agent import register_bar_builder

        register_bar_builder(app, settings)
    return app


def run(
    settings: Settings,
    bars_from_trades: bool | None = None,
    web_port: int | None = None,
    instance: str | None = None,
) -> None:
    """Serve metrics and run one worker of the configured engine until SIGINT/SIGTERM."""
    require_topics(settings, (TRADES, BARS, FEATURES, DEAD_LETTER, MARKET_RETURNS), "features")
    serve_metrics(settings.prometheus.features_metrics_port, "features")
    if settings.features.engine == "batch":
        if bars_from_trades:
            raise SystemExit("--bars-from-trades runs on the Faust engine (features.engine=faust)")
        from stream_processors import batch_worker

        batch_worker.run(settings, OnlineWriter(get_store(settings), settings), instance)
        return
    app = build(settings, bars_from_trades, web_port)
    log.info("%s worker %s starting", STAGE, app.conf.id)
    worker = faust.Worker(
        app, loglevel=logging.getLogger().level or logging.INFO, redirect_stdouts=False, quiet=True
    )
    worker.execute_from_commandline()
