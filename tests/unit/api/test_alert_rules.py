"""deploy/prometheus/alerts.yml: valid for promtool, behaves as its unit tests say, real metrics."""

from __future__ import annotations

import subprocess

import yaml
from metric_names import known_series, referenced

from api.grafana_publish import ALERT_RULES


def test_promtool_check_rules(promtool: str) -> None:
    out = subprocess.run(
        [promtool, "check", "rules", str(ALERT_RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_rule_unit_tests(promtool: str) -> None:
    tests = ALERT_RULES.with_name("alerts_test.yml")
    out = subprocess.run(
        [promtool, "test", "rules", tests.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tests.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_cover_the_required_alerts_with_real_metric_names() -> None:
    rules = [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {
        "TickwatchPipelineStalled",
        "TickwatchConsumerLagGrowing",
        "TickwatchDeadLettersRising",
        "TickwatchAnomalyStorm",
        "TickwatchTargetDown",
    } <= names
    known = known_series()
    for rule in rules:
        assert referenced(rule["expr"]) <= known, rule["alert"]
        assert rule["annotations"]["summary"] and rule["labels"]["severity"] in (
            "warning",
            "critical",
        )
