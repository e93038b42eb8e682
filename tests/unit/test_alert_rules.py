"""The shipped Prometheus alert rules: valid for promtool, unit-tested, and on contract.

The comment block at the top of the rules file lists every metric the rules use with its
labels; that list is the contract edgeagent/metrics.py implements.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import require_binary

RULES_DIR = Path(__file__).resolve().parents[2] / "config" / "prometheus"
RULES = RULES_DIR / "edgeagent-alerts.yml"
RULE_TESTS = RULES_DIR / "edgeagent-alerts.test.yml"
DASHBOARD = RULES_DIR.parent / "grafana" / "edgeagent.json"

EXPECTED_ALERTS = {
    "EdgeagentDown",
    "EdgeagentFeedStale",
    "EdgeagentFeedGenerationHeld",
    "EdgeagentPublishFailing",
    "EdgeagentPublisherDown",
    "EdgeagentRpzSerialLag",
    "EdgeagentRpzCanaryFailing",
    "EdgeagentProxyCanaryFailing",
    "EdgeagentTakedownSlaBreached",
    "EdgeagentTakedownOverdue",
    "EdgeagentIntakeDailyCap",
}
# Labels a metric may carry: names of configured things, never a list entry.
ALLOWED_LABELS = {"feed", "publisher", "resolver", "proxy", "source"}

_CONTRACT_LINE = re.compile(r"^#\s+(edgeagent_[a-z_]+)\{([a-z_, ]*)\}\s+(gauge|counter)\b")
_METRIC_USE = re.compile(r"\bedgeagent_[a-z_]+")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=RULES_DIR,
    )


def _contract() -> dict[str, tuple[str, set[str]]]:
    """Metric name -> (type, labels) from the rules file's comment block."""
    metrics: dict[str, tuple[str, set[str]]] = {}
    for line in RULES.read_text().splitlines():
        match = _CONTRACT_LINE.match(line)
        if match:
            labels = {label.strip() for label in match.group(2).split(",") if label.strip()}
            metrics[match.group(1)] = (match.group(3), labels)
    return metrics


def test_promtool_check_rules_passes_with_every_rule() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout, result.stdout


def test_every_expected_alert_is_defined_once() -> None:
    names = re.findall(r"^\s+- alert: (\S+)$", RULES.read_text(), flags=re.MULTILINE)
    assert sorted(names) == sorted(EXPECTED_ALERTS)


def test_promtool_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_rule_unit_tests_cover_stale_feed_and_canaries() -> None:
    text = RULE_TESTS.read_text()
    for alert in ("EdgeagentFeedStale", "EdgeagentRpzCanaryFailing", "EdgeagentProxyCanaryFailing"):
        assert f"alertname: {alert}\n        exp_alerts:\n          - exp_labels" in text, alert


def test_metric_contract_matches_the_rules() -> None:
    contract = _contract()
    assert len(contract) == 11, contract
    for name, (kind, labels) in contract.items():
        assert labels <= ALLOWED_LABELS, (name, labels)
        # Prometheus naming: counters and only counters end in _total.
        assert name.endswith("_total") == (kind == "counter"), name
    used = {
        match.group(0)
        for line in RULES.read_text().splitlines()
        if not line.lstrip().startswith("#")
        for match in _METRIC_USE.finditer(line)
    }
    assert used == set(contract), used ^ set(contract)


def test_metrics_module_exports_the_contract() -> None:
    from prometheus_client import Counter, Gauge, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from edgeagent.metrics import Metrics

    metrics = Metrics()
    collectors: dict[str, Counter | Gauge] = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge):
            for family in value.describe():
                suffix = "_total" if family.type == "counter" else ""
                collectors[family.name + suffix] = value
    for name, (_kind, labels) in _contract().items():
        assert name in collectors, f"{name} missing from edgeagent/metrics.py"
        collector = collectors[name]
        child = collector.labels(**dict.fromkeys(labels, "contract-test")) if labels else collector
        if isinstance(child, Counter):
            child.inc()
        else:
            child.set(1)
    exported = {
        sample.name: (family.type, set(sample.labels))
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
    }
    for name, (kind, labels) in _contract().items():
        assert exported.get(name) == (kind, labels), name


def test_grafana_dashboard_queries_are_valid_promql_on_contract(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 9
    used = {match.group(0) for expr in exprs for match in _METRIC_USE.finditer(expr)}
    assert used == set(_contract()), used ^ set(_contract())
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
