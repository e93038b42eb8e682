"""The central daemon as the daemon benchmarks run it: ``edgeagent run`` with an RPZ
zone-file publisher and the proxy index, in a temporary directory, on free loopback ports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AGENT = [sys.executable, "-m", "edgeagent.cli"]
"""The agent's command line, as the benchmarks run it."""


def analyst_token(config: Path) -> str:
    """A new analyst token (``ana``) in the store of ``config``; its secret."""
    made = subprocess.run(
        [*AGENT, "token", "create", "--role", "analyst", "--name", "ana", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.split()[-1]


def write_config(
    tmp: Path, api: int, metrics: int, stop: int, extra: str = "", *, zones: bool = True
) -> Path:
    """``tmp/edgeagent.toml`` (state, zones and proxy index under ``tmp``) plus the TOML
    sections in ``extra``; the zone and index directories are created. Without ``zones``
    the RPZ has no publisher (the proxy index alone)."""
    publisher = f"""
[publishers.zones]
kind = "zonefile"
directory = "{tmp / "zones"}"
"""
    config = tmp / "edgeagent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{tmp / "state"}"
log_format = "json"
[api]
port = {api}
max_body_bytes = 4194304
[metrics]
port = {metrics}
[rpz]
proxy_ipv4 = "192.0.2.80"
{publisher if zones else ""}
[proxy]
enabled = true
index_path = "{tmp / "proxy" / "proxy-index.bin"}"
stop_page_listen_port = {stop}
{extra}""",
        encoding="utf-8",
    )
    (tmp / "proxy").mkdir()
    (tmp / "zones").mkdir()
    return config
