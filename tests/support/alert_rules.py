"""The shipped Prometheus alert rules, their rule tests, the Grafana dashboard, and the
metric contract written at the top of the rules file.

The comment block at the top of the rules file lists every metric the rules use with its
labels (``# edgeagent_name{label, ...} gauge|counter``); that list is the contract
``edgeagent/metrics.py`` implements.
"""

from __future__ import annotations

import re
from pathlib import Path

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
    "EdgeagentResolverUnreachable",
    "EdgeagentResolverPolicyStale",
    "EdgeagentProxyCanaryFailing",
    "EdgeagentEdgeIndexStale",
    "EdgeagentTakedownSlaBreached",
    "EdgeagentTakedownOverdue",
    "EdgeagentTakedownNoticeFailing",
    "EdgeagentIntakeDailyCap",
    "EdgeagentIntakeMailFailing",
    "EdgeagentDatabaseUnreachable",
    "EdgeagentDatabaseReplicationLag",
}

_CONTRACT_LINE = re.compile(r"^#\s+(edgeagent_[a-z_]+)\{([a-z_, ]*)\}\s+(gauge|counter)\b")
METRIC_USE = re.compile(r"\bedgeagent_[a-z_]+")


def metric_contract() -> dict[str, tuple[str, set[str]]]:
    """Metric name -> (type, labels) from the rules file's comment block."""
    metrics: dict[str, tuple[str, set[str]]] = {}
    for line in RULES.read_text().splitlines():
        match = _CONTRACT_LINE.match(line)
        if match:
            labels = {label.strip() for label in match.group(2).split(",") if label.strip()}
            metrics[match.group(1)] = (match.group(3), labels)
    return metrics
