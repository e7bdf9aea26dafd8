"""Where a record's time goes, hop by hop, from the stages' own `tickwatch_hop_latency_seconds`.

Two readers of the same histograms: `prometheus_hops` asks the Prometheus server that scrapes
every stage (what `tickwatch stack status` prints), and `hop_stats` diffs two scrapes of the
stages' own /metrics endpoints (what the end-to-end benchmark prints for its window, with no
Prometheus in between). Quantiles follow Prometheus's `histogram_quantile`: linear inside the
bucket the rank falls in, so they are as fine as HOP_BUCKETS.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from ops.results import MIN_PERCENTILE_SAMPLES
from tickwatch.metrics import Hop, hop_quantile_query

HISTOGRAM = "tickwatch_hop_latency_seconds"
Buckets = dict[float, float]  # upper bound (le) -> cumulative count


@dataclass(frozen=True)
class HopStat:
    """One hop over a window: its records and their quantiles (seconds)."""

    n: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None  # upper bound of the highest non-empty bucket: the slowest record

    def p99_text(self) -> str:
        """p99 in ms, or, over fewer than MIN_PERCENTILE_SAMPLES records, the max with its n."""
        if self.n == 0 or self.p99_s is None:
            return "no records"
        if self.n < MIN_PERCENTILE_SAMPLES:
            bound = "+Inf" if self.max_s is None or math.isinf(self.max_s) else _ms(self.max_s)
            return f"max <= {bound} ms (n={self.n})"
        return f"{_ms(self.p99_s)} ms"


def _ms(s: float) -> str:
    return f"{s * 1000:.1f}"


def parse_hop_buckets(
    text: str, histogram: str = HISTOGRAM, label: str = "hop"
) -> dict[str, Buckets]:
    """Each hop's (each `label` value's, of another histogram) cumulative bucket counts from a
    Prometheus text exposition."""
    out: dict[str, Buckets] = {}
    for family in text_string_to_metric_families(text):
        if family.name != histogram:
            continue
        for sample in family.samples:
            if sample.name == f"{histogram}_bucket":
                hop = sample.labels[label]
                le = float(sample.labels["le"])
                out.setdefault(hop, {})[le] = out.get(hop, {}).get(le, 0.0) + sample.value
    return out


def bucket_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus's `histogram_quantile` on one histogram's cumulative counts."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # the rank is beyond the last finite bound
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return bounds[-1]


def stat(buckets: Buckets) -> HopStat:
    bounds = sorted(buckets)
    n = int(round(buckets[bounds[-1]])) if bounds else 0
    top = next((le for le in bounds if buckets[le] >= n), None) if n else None
    return HopStat(n, bucket_quantile(0.5, buckets), bucket_quantile(0.99, buckets), top)


def window_stat(before: Buckets, after: Buckets) -> HopStat:
    """One histogram's records between two scrapes (a counter reset reads as a fresh start)."""
    diff = {le: after[le] - before.get(le, 0.0) for le in after}
    if any(v < 0 for v in diff.values()):  # the stage restarted between the scrapes
        diff = dict(after)
    return stat(diff)


def hop_stats(before: dict[str, Buckets], after: dict[str, Buckets]) -> dict[str, HopStat]:
    """Per hop, the records between two scrapes."""
    return {str(hop): window_stat(before.get(hop, {}), after.get(hop, {})) for hop in Hop}


def scrape(
    port: int,
    host: str = "127.0.0.1",
    timeout_s: float = 5.0,
    histogram: str = HISTOGRAM,
    label: str = "hop",
) -> dict[str, Buckets]:
    """One stage's hop histograms (or `histogram` by `label`) from its /metrics endpoint (empty
    if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as r:
            return parse_hop_buckets(r.read().decode(), histogram, label)
    except OSError:
        return {}


def scrape_all(ports: list[int]) -> dict[str, Buckets]:
    """The hop histograms of several stages, summed (each hop is recorded by one stage kind)."""
    total: dict[str, Buckets] = {}
    for port in ports:
        for hop, buckets in scrape(port).items():
            mine = total.setdefault(hop, {})
            for le, v in buckets.items():
                mine[le] = mine.get(le, 0.0) + v
    return total


def prometheus_hops(
    url: str, window: str = "5m", timeout_s: float = 3.0
) -> dict[str, tuple[float | None, float | None]]:
    """Per hop (p50 s, p99 s) over `window` from the Prometheus server; {} if it cannot say."""
    out: dict[str, list[float | None]] = {}
    try:
        for i, q in enumerate((0.5, 0.99)):
            query = urllib.parse.urlencode({"query": hop_quantile_query(q, window)})
            with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=timeout_s) as r:
                body = json.loads(r.read())
            for sample in body["data"]["result"]:
                x = float(sample["value"][1])
                hop = sample["metric"].get("hop", "?")
                out.setdefault(hop, [None, None])[i] = x if math.isfinite(x) else None
    except (OSError, ValueError, KeyError):
        return {}
    order = {str(h): i for i, h in enumerate(Hop)}  # the pipeline's order, unknown hops last
    return {h: (out[h][0], out[h][1]) for h in sorted(out, key=lambda h: order.get(h, len(order)))}
