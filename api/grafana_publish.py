"""`tickwatch grafana publish`: push dashboards and alert rules to a Grafana via grafana-client.

Dashboards go in as they are in grafana/dashboards (overwrite by uid). Each Prometheus rule in
deploy/prometheus/alerts.yml becomes a Grafana-managed rule in a group of the same name: query A
is the rule's PromQL (it returns a series only while the condition holds), B reduces it to its
last value, and condition C is true for every series present, so each firing series alerts with
its own labels, as in Prometheus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from tickwatch.settings import Settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DATASOURCE_UID = "prometheus"
FOLDER_UID = "tickwatch"
GROUP_INTERVAL_S = 60
LOOKBACK_S = 900


def dashboard_payloads(folder_uid: str, directory: Path = DASHBOARDS) -> list[dict[str, Any]]:
    """One `POST /api/dashboards/db` body per dashboard file (overwrite by uid, no numeric id)."""
    out = []
    for path in sorted(directory.glob("*.json")):
        dashboard = json.loads(path.read_text())
        dashboard["id"] = None
        out.append(
            {
                "dashboard": dashboard,
                "folderUid": folder_uid,
                "overwrite": True,
                "message": f"tickwatch grafana publish ({path.name})",
            }
        )
    return out


def _seconds(duration: str | None) -> int:
    """Prometheus duration (`5m`, `1h30m`, `90s`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration or ""):
        total += int(number) * units[unit]
    return int(total)


def _template(text: str) -> str:
    """Prometheus annotation templates to Grafana's: `$value` is the reduced query B."""
    return text.replace("$value", "$values.B.Value")


def rule_uid(group: str, alert: str) -> str:
    """A stable Grafana rule uid (at most 40 characters) per group and alert name."""
    return "tw-" + hashlib.blake2b(f"{group}/{alert}".encode(), digest_size=12).hexdigest()


def grafana_rule(
    rule: dict[str, Any], group: str, folder_uid: str, datasource_uid: str
) -> dict[str, Any]:
    """A Grafana-managed alert rule equivalent to one Prometheus alerting rule."""
    expr = rule["expr"].strip()
    lookback = max(LOOKBACK_S, 2 * _seconds(rule.get("for")))
    return {
        "uid": rule_uid(group, rule["alert"]),
        "title": rule["alert"],
        "folderUID": folder_uid,
        "ruleGroup": group,
        "condition": "C",
        "for": f"{_seconds(rule.get('for'))}s",
        "noDataState": "OK",
        "execErrState": "Error",
        "labels": dict(rule.get("labels", {})),
        "annotations": {k: _template(v.strip()) for k, v in rule.get("annotations", {}).items()},
        "data": [
            {
                "refId": "A",
                "datasourceUid": datasource_uid,
                "relativeTimeRange": {"from": lookback, "to": 0},
                "model": {
                    "refId": "A",
                    "expr": expr,
                    "instant": True,
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                },
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "relativeTimeRange": {"from": 0, "to": 0},
                "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"},
            },
            {
                "refId": "C",
                "datasourceUid": "__expr__",
                "relativeTimeRange": {"from": 0, "to": 0},
                "model": {"refId": "C", "type": "math", "expression": "$B == $B"},
            },
        ],
    }


def rule_groups(
    folder_uid: str, datasource_uid: str = DATASOURCE_UID, path: Path = ALERT_RULES
) -> list[dict[str, Any]]:
    """Grafana rule-group bodies (`PUT .../folder/{uid}/rule-groups/{group}`) from alerts.yml."""
    spec = yaml.safe_load(path.read_text())
    groups = []
    for group in spec["groups"]:
        rules = [
            grafana_rule(r, group["name"], folder_uid, datasource_uid)
            for r in group["rules"]
            if "alert" in r
        ]
        groups.append(
            {
                "title": group["name"],
                "folderUid": folder_uid,
                "interval": GROUP_INTERVAL_S,
                "rules": rules,
            }
        )
    return groups


def _ensure_folder(api: Any, title: str) -> str:
    for folder in api.folder.get_all_folders():
        if folder.get("uid") == FOLDER_UID or folder.get("title") == title:
            return folder["uid"]
    return api.folder.create_folder(title, uid=FOLDER_UID)["uid"]


def publish(api: Any, folder: str) -> tuple[int, int]:
    """Push dashboards and rule groups through a GrafanaApi; returns (dashboards, rules)."""
    folder_uid = _ensure_folder(api, folder)
    boards = dashboard_payloads(folder_uid)
    for body in boards:
        api.dashboard.update_dashboard(body)
        log.info("dashboard %s published", body["dashboard"]["uid"])
    rules = 0
    for group in rule_groups(folder_uid):
        api.alertingprovisioning.update_rule_group(folder_uid, group["title"], group)
        rules += len(group["rules"])
    return len(boards), rules


def run(settings: Settings, url: str, token: str, folder: str = "tickwatch") -> None:
    """Connect with a service-account token and publish (the token is never logged)."""
    from grafana_client import GrafanaApi

    del settings  # the Grafana address comes from the command line
    api = GrafanaApi.from_url(url=url, credential=token)
    boards, rules = publish(api, folder)
    log.info("published %d dashboards and %d alert rules to %s", boards, rules, url)
    print(f"published {boards} dashboards and {rules} alert rules to {url} (folder {folder!r})")
