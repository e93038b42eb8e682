"""The agent daemon as a separate process: ``edgeagent run``, its token CLI, HTTP calls.

- :func:`create_token` runs ``edgeagent token create`` on a config; returns the secret.
- :func:`create_tokens` runs the same command in this process for several people (no
  interpreter to start for each: seconds saved per token on a busy machine).
- :func:`running_agent` runs ``edgeagent run -c CONFIG`` until ``/healthz`` answers on the
  metrics port, and kills it on the way out if the test has not stopped it.
- :func:`http_json` makes one request and returns ``(status, body)``, the body parsed
  when it is JSON; an HTTP error status is returned, not raised.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgeagent.lab.edges import AGENT, create_token

__all__ = [
    "AGENT",
    "agent_listeners_toml",
    "create_token",
    "create_tokens",
    "http_json",
    "running_agent",
]


def create_tokens(config: Path, people: Mapping[str, str]) -> dict[str, str]:
    """``edgeagent token create`` for each ``name: role`` of ``people``, in order, as the
    service user; each person's secret. (The service user may create tokens until an
    admin token exists: name the admin last.)"""
    from edgeagent import cli

    tokens = {}
    for name, role in people.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            argv = ["token", "create", "--role", role, "--name", name, "-c", str(config)]
            assert cli.main(argv) == 0, name
        tokens[name] = out.getvalue().split()[-1]
    return tokens


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
    config: Path,
    metrics_port: int,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``edgeagent run`` until it answers /healthz; killed on the way out if still up.
    ``env``: variables set for the daemon on top of the tests' own."""
    log = log_path.open("w") if log_path is not None else None
    out: Any = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [AGENT, "run", "-c", str(config)],
        stdout=out,
        stderr=out,
        env={**os.environ, **env} if env is not None else None,
    )
    try:
        _wait_answering(f"http://127.0.0.1:{metrics_port}/healthz", time.monotonic() + 30)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if log is not None:
            log.close()
