"""Reading tickwatch's real Prometheus metrics in tests: this process's registry or a /metrics."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def histogram(name: str, **labels: str) -> tuple[float, float]:
    """(count, sum) of one histogram series in this process (0, 0 before its first value)."""
    return (
        REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0,
        REGISTRY.get_sample_value(f"{name}_sum", labels) or 0.0,
    )


def grown(after: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    """(count, sum) observed between two readings of `histogram`."""
    return after[0] - before[0], after[1] - before[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Another process's /metrics: (sample name, sorted labels) -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
