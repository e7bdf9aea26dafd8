"""deploy/prometheus/alerts.yml: valid for promtool, behaves as its unit tests say, real metrics."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from metric_names import known_series, referenced

from api.grafana_publish import ALERT_RULES
from tickwatch.settings import Settings
from tickwatch.stack.services import Prometheus


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool, from Debian's prometheus package: installed the way `tickwatch stack up` does it
    when missing (this test runs before the stack is up on a fresh machine). Skipped only where
    it cannot be installed (no apt-get or no root)."""
    if not shutil.which("promtool"):
        try:
            Prometheus(Settings(_env_file=None)).install()
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"promtool is not installed and could not be installed: {exc}")
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("the prometheus package installed no promtool")
    return path


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
