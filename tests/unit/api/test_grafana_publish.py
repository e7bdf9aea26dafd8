"""Payloads `tickwatch grafana publish` sends: dashboards by uid, one Grafana rule per alert."""

from __future__ import annotations

import json

import yaml

from api.grafana_publish import (
    ALERT_RULES,
    DASHBOARDS,
    dashboard_payloads,
    publish,
    rule_groups,
    rule_uid,
)


def test_dashboard_payloads_overwrite_by_uid_in_the_folder() -> None:
    payloads = dashboard_payloads("fold")
    files = sorted(DASHBOARDS.glob("*.json"))
    assert len(payloads) == len(files) >= 2
    for payload, path in zip(payloads, files, strict=True):
        original = json.loads(path.read_text())
        assert payload["folderUid"] == "fold" and payload["overwrite"] is True
        assert payload["dashboard"]["id"] is None
        assert payload["dashboard"]["uid"] == original["uid"]
        assert payload["dashboard"]["panels"] == original["panels"]


def test_every_prometheus_alert_becomes_an_equivalent_grafana_rule() -> None:
    spec = yaml.safe_load(ALERT_RULES.read_text())
    groups = rule_groups("fold", "prom-uid")
    assert [g["title"] for g in groups] == [g["name"] for g in spec["groups"]]
    for group, source in zip(groups, spec["groups"], strict=True):
        assert group["folderUid"] == "fold" and group["interval"] > 0
        assert [r["title"] for r in group["rules"]] == [r["alert"] for r in source["rules"]]
        for rule, prom in zip(group["rules"], source["rules"], strict=True):
            query, reduce, condition = rule["data"]
            assert query["datasourceUid"] == "prom-uid"
            assert query["model"]["expr"] == prom["expr"].strip()
            assert reduce["model"]["expression"] == "A" and condition["model"]["expression"]
            assert rule["condition"] == "C" and rule["ruleGroup"] == source["name"]
            assert rule["labels"] == prom.get("labels", {})
            assert "$value " not in json.dumps(rule["annotations"])
            assert rule["uid"] == rule_uid(source["name"], prom["alert"]) and len(rule["uid"]) <= 40


def test_rule_durations_are_converted_to_seconds() -> None:
    rules = {r["title"]: r for g in rule_groups("f") for r in g["rules"]}
    assert rules["TickwatchPipelineStalled"]["for"] == "300s"
    assert rules["TickwatchTargetDown"]["for"] == "120s"
    assert rules["TickwatchAnomalyStorm"]["for"] == "0s"


class RecordingGrafana:
    """Stands in for GrafanaApi's element objects, recording calls (no Grafana can run here)."""

    def __init__(self, folders: list[dict]) -> None:
        self.calls: list[tuple] = []
        self.folder = self.dashboard = self.alertingprovisioning = self
        self.folders = folders

    def get_all_folders(self) -> list[dict]:
        return self.folders

    def create_folder(self, title: str, uid: str | None = None) -> dict:
        self.calls.append(("create_folder", title, uid))
        return {"uid": uid, "title": title}

    def update_dashboard(self, body: dict) -> None:
        self.calls.append(("dashboard", body["dashboard"]["uid"], body["folderUid"]))

    def update_rule_group(self, folder_uid: str, group: str, body: dict) -> None:
        self.calls.append(("rules", folder_uid, group, len(body["rules"])))


def test_publish_creates_the_folder_once_then_reuses_it() -> None:
    api = RecordingGrafana(folders=[])
    boards, rules = publish(api, "tickwatch")
    assert api.calls[0] == ("create_folder", "tickwatch", "tickwatch")
    assert boards == 2 and rules == sum(len(g["rules"]) for g in rule_groups("tickwatch"))
    assert {c[1] for c in api.calls if c[0] == "dashboard"} == {
        "tickwatch-pipeline",
        "tickwatch-market",
    }

    again = RecordingGrafana(folders=[{"uid": "existing", "title": "tickwatch"}])
    publish(again, "tickwatch")
    assert not [c for c in again.calls if c[0] == "create_folder"]
    assert all(c[2] == "existing" for c in again.calls if c[0] == "dashboard")
