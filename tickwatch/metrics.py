"""Prometheus metrics shared by every service; one naming scheme: `tickwatch_<what>_<unit>`."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# finer under 250 ms, where a single hop and a bar's way to its decision should be, and through the
# seconds a whole market's minute takes (a quantile is interpolated inside its bucket: between 100
# and 250 ms a p99 just past 100 read as 137)
HOP_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.2,
    0.25,
    0.5,
    1,
    1.5,
    2,
    3,
    5,
    30,
    120,
)


def hop_quantile_query(q: float, window: str) -> str:
    """PromQL of each hop's `q` quantile over `window` (the dashboard, the API and `tickwatch
    stack status` ask the same)."""
    return (
        f"histogram_quantile({q:g}, sum by (hop, le) "
        f"(rate(tickwatch_hop_latency_seconds_bucket[{window}])))"
    )


class Hop(StrEnum):
    """The pipeline's hops in order, each recorded by the stage that completes it."""

    FEED_TO_BARS = "feed_to_bars"  # producer: feed frame received -> bar appended to `bars`
    BARS_TO_FEATURES = "bars_to_features"  # features (both engines): -> vector acknowledged
    # score worker: -> the vector's scoring transaction committed (every vector, flagged or not)
    FEATURES_TO_SCORES = "features_to_scores"
    FEATURES_TO_ANOMALIES = "features_to_anomalies"  # score worker: -> event committed
    ANOMALIES_TO_STORE = "anomalies_to_store"  # sink: -> event in the Redis store


EVENTS_IN = Counter("tickwatch_events_in_total", "Records read by a stage", ["stage", "type"])
EVENTS_OUT = Counter(
    "tickwatch_events_out_total", "Records written (acknowledged) by a stage", ["stage", "type"]
)
DEAD_LETTERS = Counter(
    "tickwatch_dead_letters_total",
    "Records refused and sent to the dead-letter topic",
    ["stage", "reason"],
)
DUPLICATES = Counter(
    "tickwatch_duplicates_total",
    "Records ignored as repeats (duplicate, or re-read after a restart)",
    ["stage", "kind"],
)
ERRORS = Counter("tickwatch_errors_total", "Errors by stage and kind", ["stage", "kind"])
BYTES_IN = Counter("tickwatch_bytes_in_total", "Raw bytes received by a stage", ["stage"])
RECONNECTS = Counter("tickwatch_reconnects_total", "Upstream reconnects", ["stage"])
CONSUMER_LAG = Gauge(
    "tickwatch_consumer_lag", "Messages behind the log end", ["stage", "topic", "partition"]
)
EVENT_TO_EMIT_NAME = "tickwatch_event_to_emit_seconds"
EVENT_TO_EMIT = Histogram(
    EVENT_TO_EMIT_NAME,
    "Ingest (header tw-ingest-ms) to the stage's acknowledged output",
    ["stage"],
    buckets=HOP_BUCKETS,
)
HOP_LATENCY = Histogram(
    "tickwatch_hop_latency_seconds",
    "One hop of a record (hop: " + ", ".join(Hop) + "): its input's append to the input "
    "topic (Kafka LogAppendTime; the feed's receipt for the first hop) to the hop's "
    "acknowledged output",
    ["hop"],
    buckets=HOP_BUCKETS,
)
DELIVERY_LATENCY = Histogram(
    "tickwatch_delivery_seconds",
    "Produce call to broker acknowledgement",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
LAST_EVENT_TS = Gauge(
    "tickwatch_last_event_timestamp_seconds",
    "Event time of the newest record processed",
    ["stage"],
)
SCORED_BARS = Counter("tickwatch_scored_bars_total", "Feature vectors scored", ["model"])
ANOMALY_SCORE = Histogram(
    "tickwatch_anomaly_score",
    "Model scores (higher is more unusual)",
    ["model"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1, 1.5, 2, 3, 5, 10, 25, 100),
)
ANOMALIES = Counter(
    "tickwatch_anomalies_total", "Anomaly events emitted", ["symbol", "model", "severity"]
)
MODEL_INFO = Gauge("tickwatch_model_info", "Loaded model versions (value 1)", ["model", "version"])
API_REQUESTS = Counter(
    "tickwatch_api_requests_total", "API requests", ["route", "method", "status"]
)
API_LATENCY = Histogram(
    "tickwatch_api_request_seconds",
    "API request latency",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

LATEST_ANOMALY = Gauge(
    "tickwatch_latest_anomaly_timestamp_seconds",
    "Bar time of the newest stored anomaly of each symbol (one series per symbol)",
    ["symbol", "severity"],
)
LATEST_REASON = Gauge(
    "tickwatch_latest_anomaly_reason",
    "Feature contributions explaining the newest stored anomaly of each symbol",
    ["symbol", "model", "feature"],
)


def serve_metrics(port: int, stage: str | None = None) -> None:
    """Expose /metrics on `port` (0 disables), with the stage's error series present at zero.

    Prometheus shows a labelled counter only after its first increment; starting the common
    error series at 0 lets dashboards and alerts tell "none yet" from "not scraped".
    """
    if stage:
        ERRORS.labels(stage, "delivery")
        DEAD_LETTERS.labels(stage, "invalid")
        DUPLICATES.labels(stage, "duplicate")
        RECONNECTS.labels(stage)
    if port:
        start_http_server(port, addr="0.0.0.0")


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(x)` for every x, one increment per bucket instead of per value.

    A batch stage observes thousands of latencies per step; per-value observe cost ~10 us each.
    Uses the child's bucket bounds and values, as `Histogram.observe` does (a unit test keeps
    the two equal across prometheus-client upgrades).
    """
    if not amounts:
        return
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for x in amounts:
        counts[bisect_left(bounds, x)] += 1
    for value, n in zip(histogram._buckets, counts, strict=True):
        if n:
            value.inc(n)
    histogram._sum.inc(sum(amounts))


def observe_since(histogram: Histogram, starts_ms: Sequence[int], now_s: float) -> None:
    """Observe `now - start` for each start (Unix ms), clamped at 0 (two hosts' clocks)."""
    if starts_ms:
        now_ms = now_s * 1000
        observe_many(histogram, [max(0.0, now_ms - ms) / 1000 for ms in starts_ms])
