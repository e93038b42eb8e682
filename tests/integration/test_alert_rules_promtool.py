"""The shipped Prometheus alert rules through ``promtool``: valid, their unit tests pass,
and every Grafana dashboard query parses as PromQL on the metric contract."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.alert_rules import (
    DASHBOARD,
    EXPECTED_ALERTS,
    METRIC_USE,
    RULE_TESTS,
    RULES,
    RULES_DIR,
    metric_contract,
)
from tests.support.binaries import require_binary

pytestmark = pytest.mark.integration


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=RULES_DIR,
    )


def test_promtool_check_rules_passes_with_every_rule() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout, result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_grafana_dashboard_queries_are_valid_promql_on_contract(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 9
    used = {match.group(0) for expr in exprs for match in METRIC_USE.finditer(expr)}
    assert used == set(metric_contract()), used ^ set(metric_contract())
    # promtool parses every query when it is wrapped as a recording rule (JSON is YAML).
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"edgeagent_dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    wrapped = tmp_path / "dashboard-queries.yml"
    wrapped.write_text(json.dumps(rules))
    result = _promtool("check", "rules", str(wrapped))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout, result.stdout
