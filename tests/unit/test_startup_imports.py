"""Every ``edgeagent`` command starts by importing the CLI and the config models; the
libraries only a running agent needs (aiohttp, dnspython, cryptography, the Prometheus
client) must not load then. Checked by module presence in a fresh interpreter, not by timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "edgeagent.example.toml"
HEAVY = ("aiohttp", "cryptography", "dns", "prometheus_client")


def _heavy_after(statement: str) -> list[str]:
    """Top-level heavy packages in ``sys.modules`` after ``statement``, in a new process."""
    code = (
        f"{statement}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    heavy: list[str] = json.loads(done.stdout.splitlines()[-1])
    return heavy


def test_cli_and_config_import_no_runtime_library() -> None:
    assert _heavy_after("import edgeagent.cli, edgeagent.config") == []


def test_check_config_loads_no_runtime_library() -> None:
    # The parser (every command builds it) and loading the example config, all kinds in it.
    statement = f"import edgeagent.cli\nedgeagent.cli.main(['check-config', '-c', '{EXAMPLE}'])"
    assert _heavy_after(statement) == []


def test_the_check_sees_a_runtime_library_when_one_loads() -> None:
    # The modules that serve and pull still bring their libraries: the check is not blind.
    statement = "import edgeagent.connlimits, edgeagent.feeds.rpz_transfer, edgeagent.metrics"
    statement += "\nimport edgeagent.proxy.artefact"
    statement += "\nedgeagent.proxy.artefact.new_key_pair()"
    assert _heavy_after(statement) == sorted(HEAVY)
