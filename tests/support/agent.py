"""The agent daemon as a separate process: ``edgeagent run``, its token CLI, HTTP calls.

- :func:`create_token` runs ``edgeagent token create`` on a config; returns the secret.
- :func:`running_agent` runs ``edgeagent run -c CONFIG`` until ``/healthz`` answers on the
  metrics port, and kills it on the way out if the test has not stopped it.
- :func:`http_json` makes one request and returns ``(status, body)``, the body parsed
  when it is JSON; an HTTP error status is returned, not raised.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeagent.lab.edges import AGENT, create_token

__all__ = ["AGENT", "agent_listeners_toml", "create_token", "http_json", "running_agent"]


def http_json(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    text = raw.decode()
    return status, json.loads(text) if text.startswith(("{", "[")) else text


def _wait_answering(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def agent_listeners_toml(state_dir: Path, api_port: int, metrics_port: int) -> str:
    """The ``[agent]``, ``[api]`` and ``[metrics]`` sections of a test agent on loopback."""
    return (
        f'[agent]\nstate_dir = "{state_dir}"\n\n'
        f'[api]\nhost = "127.0.0.1"\nport = {api_port}\n\n'
        f'[metrics]\nhost = "127.0.0.1"\nport = {metrics_port}\n'
    )


@contextlib.contextmanager
def running_agent(
    config: Path, metrics_port: int, log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``edgeagent run`` until it answers /healthz; killed on the way out if still up."""
    log = log_path.open("w") if log_path is not None else None
    out: Any = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen([AGENT, "run", "-c", str(config)], stdout=out, stderr=out)
    try:
        _wait_answering(f"http://127.0.0.1:{metrics_port}/healthz", time.monotonic() + 30)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if log is not None:
            log.close()
