"""Every Kafka topic tickwatch uses: name, partitions, retention, cleanup policy and key."""

from __future__ import annotations

from dataclasses import dataclass

from tickwatch.schemas import DAY_MS
from tickwatch.settings import Settings

# Retention counts from arrival, not from event time: the broker stamps every record with the
# time it appended it, so a backfill or replay of history older than a topic's retention is kept
# for the whole retention (with the producers' event-time stamps the broker's next retention
# check deleted it within a minute). Event time travels in every value (start_ms, timestamp_ms,
# bar_start_ms), which is what every stage reads.
TIMESTAMP_TYPE = "LogAppendTime"


@dataclass(frozen=True)
class TopicSpec:
    """One topic's layout; `name` is the base name before the configured prefix."""

    name: str
    key: str
    value: str
    partitions: int | None = None  # None: the configured default
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: str = "delete"
    doc: str = ""

    def config(self) -> dict[str, str]:
        """The topic-level settings a topic must have (created with, checked at every start)."""
        cfg = {"cleanup.policy": self.cleanup_policy, "message.timestamp.type": TIMESTAMP_TYPE}
        if self.cleanup_policy == "delete":
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


TRADES = TopicSpec("trades", "symbol", "Trade", doc="Polygon T events")
QUOTES = TopicSpec("quotes", "symbol", "Quote", retention_ms=1 * DAY_MS, doc="Polygon Q events")
BARS = TopicSpec("bars", "symbol", "MinuteBar", retention_ms=30 * DAY_MS, doc="closed minute bars")
# 30 days from arrival (TIMESTAMP_TYPE) keeps what was backfilled or replayed, however old its
# bars, readable for a month (a restarted score worker rebuilds from it).
FEATURES = TopicSpec(
    "features", "symbol", "FeatureVector", retention_ms=30 * DAY_MS, doc="rolling features per bar"
)
ANOMALIES = TopicSpec(
    "anomalies", "event_id", "AnomalyEvent", retention_ms=90 * DAY_MS, doc="explained anomalies"
)
LABELS = TopicSpec(
    "labels",
    "symbol",
    "AnomalyLabel",
    partitions=1,
    retention_ms=90 * DAY_MS,
    doc="injected-anomaly labels from the replay server",
)
DEAD_LETTER = TopicSpec(
    "dead-letter",
    "source",
    "DeadLetter",
    partitions=1,
    retention_ms=30 * DAY_MS,
    doc="raw records refused by any stage, with the reason",
)

MARKET_RETURNS = TopicSpec(
    "market-returns",
    "symbol",
    "MarketReturn",
    partitions=1,
    retention_ms=7 * DAY_MS,
    doc="the market proxy's return per minute, read whole by every features worker",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    TRADES,
    QUOTES,
    BARS,
    FEATURES,
    ANOMALIES,
    LABELS,
    DEAD_LETTER,
    MARKET_RETURNS,
)


def topic_name(spec: TopicSpec, settings: Settings) -> str:
    """The full topic name for this deployment (`topic_prefix` + base name)."""
    return f"{settings.topic_prefix}{spec.name}"


def partitions_for(spec: TopicSpec, settings: Settings) -> int:
    return spec.partitions or settings.kafka.default_partitions
