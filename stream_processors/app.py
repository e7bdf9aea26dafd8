"""The Faust app of the features service, configured from Settings (`create_app`)."""

from __future__ import annotations

import faust

from stream_processors import compat
from tickwatch.settings import Settings
from tickwatch.topics import BARS, partitions_for


def default_app_id(settings: Settings) -> str:
    """Consumer group and changelog-topic prefix; one per deployment (topic prefix)."""
    return f"{settings.topic_prefix}tickwatch-features"


def create_app(
    settings: Settings, web_port: int | None = None, app_id: str | None = None
) -> faust.App:
    """A Faust app: in-memory tables backed by changelog topics, web server off unless a port."""
    compat.apply()
    return faust.App(
        app_id or default_app_id(settings),
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        autodiscover=False,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_in_thread=False,
        datadir=str(settings.run_dir / "faust"),
        topic_partitions=partitions_for(BARS, settings),
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,  # a killed worker's partitions move on within ~10 s
        broker_heartbeat_interval=3.0,
        stream_buffer_maxsize=8192,
        producer_acks=-1,
        producer_linger_ms=settings.kafka.linger_ms,
        table_standby_replicas=0,
        logging_config=None,
    )
