"""The shipped Prometheus alert rules: on contract, and their rule tests cover what matters.

The contract is the comment block at the top of the rules file
(:mod:`tests.support.alert_rules`); ``promtool`` checks the rules, runs their unit tests
and parses the dashboard's queries in ``tests/integration/test_alert_rules_promtool.py``.
"""

from __future__ import annotations

import re

from tests.support.alert_rules import (
    EXPECTED_ALERTS,
    METRIC_USE,
    RULE_TESTS,
    RULES,
    metric_contract,
)

# Labels a metric may carry: names of configured things, never a list entry.
ALLOWED_LABELS = {"feed", "publisher", "resolver", "proxy", "source", "standby"}


def test_every_expected_alert_is_defined_once() -> None:
    names = re.findall(r"^\s+- alert: (\S+)$", RULES.read_text(), flags=re.MULTILINE)
    assert sorted(names) == sorted(EXPECTED_ALERTS)


def test_rule_unit_tests_cover_stale_feed_and_canaries() -> None:
    text = RULE_TESTS.read_text()
    for alert in ("EdgeagentFeedStale", "EdgeagentRpzCanaryFailing", "EdgeagentProxyCanaryFailing"):
        assert f"alertname: {alert}\n        exp_alerts:\n          - exp_labels" in text, alert


def test_metric_contract_matches_the_rules() -> None:
    contract = metric_contract()
    assert len(contract) == 18, contract
    for name, (kind, labels) in contract.items():
        assert labels <= ALLOWED_LABELS, (name, labels)
        # Prometheus naming: counters and only counters end in _total.
        assert name.endswith("_total") == (kind == "counter"), name
    used = {
        match.group(0)
        for line in RULES.read_text().splitlines()
        if not line.lstrip().startswith("#")
        for match in METRIC_USE.finditer(line)
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
    for name, (_kind, labels) in metric_contract().items():
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
    for name, (kind, labels) in metric_contract().items():
        assert exported.get(name) == (kind, labels), name
