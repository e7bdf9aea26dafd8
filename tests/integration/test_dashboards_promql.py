"""Every dashboard panel's PromQL (and each alert expression) is accepted by the real Prometheus."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from api.grafana_publish import ALERT_RULES, DASHBOARDS
from tickwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Grafana's built-in and dashboard variables, as Grafana would expand them for a 1 h range.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$symbol": ".*"}


def expand(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unexpanded variable in {expr}"
    return expr


def expressions() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out += [(f"{path.stem}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        out += [(f"alert {r['alert']}", r["expr"]) for r in group["rules"]]
    return out


def test_every_panel_and_alert_query_is_valid_promql(stack_settings: Settings) -> None:
    url = f"http://127.0.0.1:{stack_settings.prometheus.port}/api/v1/query"
    queries = expressions()
    assert len(queries) > 20
    with httpx.Client(timeout=10) as client:
        for title, expr in queries:
            resp = client.get(url, params={"query": expand(expr)})
            body = resp.json()
            assert resp.status_code == 200 and body["status"] == "success", (title, body)
