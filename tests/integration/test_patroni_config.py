"""The shipped Patroni configs (config/postgresql/) say what the lab runs, and Patroni
accepts them.

They are YAML, read here by the Python that runs Patroni (Debian's, with its YAML
module): the project's own environment has no YAML parser and needs none.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgeagent.lab.patroni import DCS_SETTINGS, DEFAULT_TIMERS, TUNED_TIMERS, load_timers
from edgeagent.lab.pgha import CONFIG_DIR

pytestmark = pytest.mark.integration

PATRONI_PYTHON = "/usr/bin/python3"  # the interpreter of Debian's /usr/bin/patroni
NODES = [CONFIG_DIR / f"patroni.node{n}.yml" for n in (1, 2)]
TIMER_KEYS = set(DEFAULT_TIMERS)


def _load(*paths: Path) -> list[Any]:
    script = (
        "import json, sys, yaml; print(json.dumps([yaml.safe_load(open(p)) for p in sys.argv[1:]]))"
    )
    done = subprocess.run(
        [PATRONI_PYTHON, "-c", script, *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    loaded: list[Any] = json.loads(done.stdout)
    return loaded


def test_the_nodes_differ_only_in_name_and_addresses() -> None:
    first, second = (json.dumps(c, sort_keys=True) for c in _load(*NODES))
    assert first.replace("node1", "node2").replace("192.0.2.11:", "192.0.2.12:") == second


def test_the_shipped_cluster_settings_are_the_labs() -> None:
    (node,) = _load(NODES[0])
    dcs = node["bootstrap"]["dcs"]
    assert {k: v for k, v in dcs.items() if k in TIMER_KEYS} == DEFAULT_TIMERS
    assert {k: v for k, v in dcs.items() if k not in TIMER_KEYS} == DCS_SETTINGS
    assert dcs["synchronous_mode"] is True  # RPO 0
    assert node["postgresql"]["custom_conf"].endswith("/postgresql.edgeagent.conf")


def test_the_tuned_timers_are_what_the_lab_reads_and_patroni_allows() -> None:
    (tuned,) = _load(CONFIG_DIR / TUNED_TIMERS)
    assert tuned == load_timers(CONFIG_DIR / TUNED_TIMERS)
    # Patroni's own rule: a primary that cannot renew its key demotes itself before the
    # key expires.
    assert tuned["loop_wait"] + 2 * tuned["retry_timeout"] <= tuned["ttl"]
    assert tuned["ttl"] < DEFAULT_TIMERS["ttl"]


def test_patroni_validates_the_shipped_configs(tmp_path: Path) -> None:
    """``patroni --validate-config``. The addresses are moved to loopback (the
    documentation addresses would each take a connect timeout): the nodes' to
    127.0.0.11-12, the etcd members' to a closed port, reported unreachable at once.
    Patroni 3.0's validator still asks for pg_hba at its older place
    (bootstrap.pg_hba): the rules are at postgresql.pg_hba, where Patroni reads them."""
    for path in NODES:
        text = re.sub(r"192\.0\.2\.2\d:2379", "127.0.0.1:9", path.read_text())
        copy = tmp_path / path.name
        copy.write_text(re.sub(r"192\.0\.2\.1([12]):", r"127.0.0.1\1:", text), encoding="utf-8")
        done = subprocess.run(
            ["patroni", "--validate-config", str(copy)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        problems = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if line.strip()
            and "127.0.0.1:9 is not reachable" not in line
            and line.strip() != "bootstrap.pg_hba  is not defined."
        ]
        assert not problems, problems
