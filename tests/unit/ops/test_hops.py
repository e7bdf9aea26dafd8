"""Hop quantiles from the stages' own histograms: the text a stage's /metrics serves, parsed
and read the way Prometheus's histogram_quantile reads it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from ops.hops import bucket_quantile, hop_stats, parse_hop_buckets
from tickwatch.metrics import HOP_BUCKETS, Hop


def _exposition(observations: dict[str, list[float]]) -> str:
    registry = CollectorRegistry()
    h = Histogram(
        "tickwatch_hop_latency_seconds", "hops", ["hop"], buckets=HOP_BUCKETS, registry=registry
    )
    for hop, values in observations.items():
        for v in values:
            h.labels(hop=hop).observe(v)
    return generate_latest(registry).decode()


def test_quantiles_interpolate_inside_the_bucket_the_rank_falls_in():
    text = _exposition({Hop.BARS_TO_FEATURES: [0.003] * 90 + [0.22] * 10})
    buckets = parse_hop_buckets(text)[Hop.BARS_TO_FEATURES]
    assert buckets[0.005] == 90 and buckets[0.25] == 100 and buckets[float("inf")] == 100
    # rank 50 of 90 inside (0.0025, 0.005]; rank 99 is the 9th of 10 inside (0.2, 0.25]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.0025 + 0.0025 * 50 / 90)
    assert bucket_quantile(0.99, buckets) == pytest.approx(0.2 + 0.05 * 9 / 10)


def test_a_window_is_the_difference_of_two_scrapes_and_few_records_print_as_a_max():
    before = parse_hop_buckets(_exposition({Hop.FEATURES_TO_ANOMALIES: [0.5] * 1000}))
    after = parse_hop_buckets(
        _exposition({Hop.FEATURES_TO_ANOMALIES: [0.5] * 1000 + [0.02] * 3 + [0.09]})
    )
    stats = hop_stats(before, after)
    window = stats[Hop.FEATURES_TO_ANOMALIES]
    assert window.n == 4  # the 1000 records before the window are not in it
    assert window.max_s == 0.1  # the slowest record's bucket bound
    assert window.p99_text() == "max <= 100.0 ms (n=4)"
    assert stats[Hop.FEED_TO_BARS].n == 0 and stats[Hop.FEED_TO_BARS].p99_text() == "no records"


def test_a_stage_restarted_between_scrapes_counts_from_its_restart():
    before = parse_hop_buckets(_exposition({Hop.FEED_TO_BARS: [0.01] * 500}))
    after = parse_hop_buckets(_exposition({Hop.FEED_TO_BARS: [0.01] * 120}))
    stat = hop_stats(before, after)[Hop.FEED_TO_BARS]
    assert stat.n == 120
    assert stat.p99_text() == f"{bucket_quantile(0.99, after[Hop.FEED_TO_BARS]) * 1000:.1f} ms"
