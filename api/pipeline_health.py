"""Pipeline health for the dashboard: the PromQL behind Grafana's pipeline-health panels, asked of
the Prometheus server that scrapes every stage, so both views show the same numbers."""

from __future__ import annotations

import asyncio
import math

import httpx

from api.errors import DependencyUnavailable
from api.responses import PipelineHealth
from tickwatch.metrics import hop_quantile_query
from tickwatch.settings import Settings

WINDOW = "1m"
TOTALS = {
    "bars_per_s": (
        f'sum(rate(tickwatch_events_in_total{{stage="features",type="MinuteBar"}}[{WINDOW}]))'
    ),
    "anomalies_per_min": (
        f'sum(rate(tickwatch_events_out_total{{stage="score",type="AnomalyEvent"}}[{WINDOW}])) * 60'
    ),
    "dead_letters_per_min": f"sum(rate(tickwatch_dead_letters_total[{WINDOW}])) * 60",
}
BY_STAGE = {
    "consumer_lag": "sum by (stage) (tickwatch_consumer_lag)",
    "latency_p95_s": (
        "histogram_quantile(0.95, sum by (stage, le) "
        f"(rate(tickwatch_event_to_emit_seconds_bucket[{WINDOW}])))"
    ),
}
BY_HOP = {
    "hop_latency_p50_s": hop_quantile_query(0.5, WINDOW),
    "hop_latency_p99_s": hop_quantile_query(0.99, WINDOW),
}
SERVICES_UP = 'up{job=~"tickwatch-.*"}'
QUERY_TIMEOUT_S = 3.0


async def _query(client: httpx.AsyncClient, url: str, promql: str) -> list[dict]:
    resp = await client.get(f"{url}/api/v1/query", params={"query": promql})
    resp.raise_for_status()
    body = resp.json()
    if body.get("status") != "success":
        raise ValueError(body.get("error", "query failed"))
    return body["data"]["result"]


def _value(sample: dict) -> float | None:
    x = float(sample["value"][1])
    return x if math.isfinite(x) else None


async def read_health(settings: Settings) -> PipelineHealth:
    """Every health number from one round of instant queries; 503 if Prometheus cannot answer."""
    url = settings.prometheus.url
    queries = {**TOTALS, **BY_STAGE, **BY_HOP, "services_up": SERVICES_UP}
    try:
        async with httpx.AsyncClient(timeout=QUERY_TIMEOUT_S) as client:
            results = await asyncio.gather(*(_query(client, url, q) for q in queries.values()))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise DependencyUnavailable("prometheus", f"{type(exc).__name__}: {exc}"[:300]) from exc
    answers = dict(zip(queries, results, strict=True))
    totals = {name: _value(answers[name][0]) if answers[name] else None for name in TOTALS}
    by_stage = {name: _by_label(answers[name], "stage") for name in BY_STAGE}
    by_hop = {name: _by_label(answers[name], "hop") for name in BY_HOP}
    services = {s["metric"].get("job", "?"): _value(s) == 1.0 for s in answers["services_up"]}
    return PipelineHealth(
        **totals,
        **by_stage,
        **by_hop,
        services_up=services,
        window=WINDOW,
        prometheus=url,
        queries=queries,
    )


def _by_label(samples: list[dict], label: str) -> dict[str, float]:
    """Each sample's finite value by one of its labels (NaN: no record in the window)."""
    return {s["metric"].get(label, "?"): v for s in samples if (v := _value(s)) is not None}
