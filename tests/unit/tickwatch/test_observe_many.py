"""observe_many leaves a histogram exactly as observing each value does; observe_since too."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from tickwatch.metrics import LATENCY_BUCKETS, observe_many, observe_since


def _samples(h: Histogram) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in h.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_observe_per_value() -> None:
    rnd = random.Random(3)
    values = [rnd.choice([0.0, 0.005, 1, 120, 500.0]) for _ in range(50)]
    values += [rnd.expovariate(2.0) for _ in range(500)]
    one, many = (
        Histogram("lat", "x", ["stage"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
        for _ in range(2)
    )
    for x in values:
        one.labels("s").observe(x)
    observe_many(many.labels("s"), values[:300])
    observe_many(many.labels("s"), values[300:])
    observe_many(many.labels("s"), [])
    got, want = _samples(many), _samples(one)
    assert got.keys() == want.keys()
    for key, value in want.items():  # every bucket and the count exactly, the sum to rounding
        assert got[key] == (pytest.approx(value) if key[0].endswith("_sum") else value), key
    assert want[("lat_count", (("stage", "s"),))] == len(values)


def test_observe_since_observes_the_time_from_each_start_clamped_at_zero() -> None:
    since, each = (
        Histogram("lat", "x", ["stage"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
        for _ in range(2)
    )
    now_s, starts_ms = 1_000.0, [999_990, 999_999, 1_000_000, 1_000_004, 880_000]
    observe_since(since.labels("s"), starts_ms, now_s)
    observe_since(since.labels("s"), [], now_s)
    for x in (0.01, 0.001, 0.0, 0.0, 120.0):  # a start after `now` (another host's clock): 0
        each.labels("s").observe(x)
    got, want = _samples(since), _samples(each)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
