"""Every series name tickwatch.metrics can expose, for checking PromQL in alerts and dashboards."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import tickwatch.metrics  # noqa: F401 - registers the metrics

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def known_series() -> set[str]:
    """tickwatch_* series names by metric type (counter `_total`, histogram buckets, gauges)."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("tickwatch_"):
            names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def referenced(expr: str) -> set[str]:
    """tickwatch_* series names used in a PromQL expression."""
    return set(re.findall(r"\btickwatch_[a-z_]+", expr))
