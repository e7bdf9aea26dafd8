"""grafana/: dashboards well-formed, on the provisioned datasource, using real metric names."""

from __future__ import annotations

import json

import yaml
from metric_names import known_series, referenced

from api.grafana_publish import DASHBOARDS, DATASOURCE_UID
from api.pipeline_health import BY_HOP, WINDOW

PROVISIONING = DASHBOARDS.parent / "provisioning"


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def test_pipeline_health_and_market_dashboards_exist_with_unique_uids() -> None:
    boards = dashboards()
    assert set(boards) == {"pipeline-health.json", "market.json"}
    assert len({b["uid"] for b in boards.values()}) == 2


def test_every_panel_queries_the_provisioned_prometheus_with_known_metrics() -> None:
    known = known_series()
    for name, board in dashboards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                used = referenced(target["expr"])
                assert used <= known, (name, panel["title"], used - known)
                assert used or "up{" in target["expr"], (name, panel["title"])


def test_provisioning_points_at_the_dashboards_and_the_datasource_uid() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == DATASOURCE_UID
    assert ds["datasources"][0]["type"] == "prometheus"
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "tickwatch.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_pipeline_health_asks_the_hop_latencies_the_dashboard_plots() -> None:
    board = dashboards()["pipeline-health.json"]
    plotted = {
        target["expr"].replace("$__rate_interval", WINDOW)
        for panel in board["panels"]
        for target in panel["targets"]
        if "tickwatch_hop_latency_seconds" in target["expr"]
    }
    assert set(BY_HOP.values()) == plotted
