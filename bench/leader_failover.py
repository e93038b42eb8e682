"""Leader kill -9 -> the new leader has published: two real agents on one PostgreSQL 15.

A throwaway PostgreSQL 15 and a BIND hidden primary (the shipped snippet, TSIG) on
loopback; two ``edgeagent run`` processes share the database and publish to the primary
by RFC 2136 UPDATE. Each round posts one decision to the standby, SIGKILLs the leader at
once (it may or may not have published that decision) and measures, from the kill, when
the standby says it leads and when the decision's name is in the zone at the primary
(read back by AXFR): published by the new leader with no further decision. The killed
agent is restarted as the next round's standby. The leader settings are the defaults
(``leader_poll_seconds = 1``, ``leader_session_timeout_seconds = 5``).
"""

from __future__ import annotations

import json
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.query
import dns.tsig

from edgeagent.lab.daemons import RunningDaemon, free_port
from edgeagent.lab.postgres import start_postgres
from edgeagent.lab.resolvers import TRANSFER_KEY, UPDATE_KEY, bootstrap_zones, start_primary
from edgeagent.model import DesiredState
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease

AGENT = str(Path(sys.executable).parent / "edgeagent")
RPZ = RpzSettings()


@dataclass
class _Agent:
    config: Path
    api: str
    metrics: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Path) -> None:
        with log.open("a") as out:
            self.proc = subprocess.Popen(
                [AGENT, "run", "-c", str(self.config)], stdout=out, stderr=out
            )
        _until(lambda: _call("GET", f"{self.metrics}/healthz")[0] == 200, 30, "agent up")

    def leads(self, token: str) -> bool:
        status, body = _call("GET", f"{self.api}/v1/status", token)
        return status == 200 and bool(body["leader"])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def _call(method: str, url: str, token: str = "", body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode() if body is not None else None, method=method
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def _until(check: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"timed out: {what}")


def _config(base: Path, name: str, dsn: str, primary: RunningDaemon) -> _Agent:
    api, metrics = free_port(), free_port()
    config = base / f"{name}.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{base / name}"
log_format = "json"
[store]
backend = "postgresql"
dsn = "{dsn}"
password_file = "{base / "db.password"}"
[api]
port = {api}
[metrics]
port = {metrics}
[rpz]
zone = "{RPZ.zone}"
exception_zone = "{RPZ.exception_zone}"
verify_interval_seconds = 3600
[publishers.primary]
kind = "bind-update"
server = "{primary.host}"
port = {primary.port}
tsig_key_name = "{UPDATE_KEY}"
tsig_secret_file = "{base / "update.secret"}"
""",
        encoding="utf-8",
    )
    return _Agent(config, f"http://127.0.0.1:{api}", f"http://127.0.0.1:{metrics}")


def _in_zone(primary: RunningDaemon, owner: str) -> bool:
    zone = RPZ.zone + "."
    key = dns.tsig.Key(TRANSFER_KEY, primary.extra["transfer_secret"])
    messages = dns.query.xfr(
        primary.host, zone, port=primary.port, keyring=key, keyname=key.name, timeout=10
    )
    origin = dns.name.from_text(zone)
    return any(
        rrset.name.relativize(origin).to_text() == owner for m in messages for rrset in m.answer
    )


def _round(
    i: int, leader: _Agent, standby: _Agent, token: str, primary: RunningDaemon
) -> tuple[float, float]:
    """One decision to the standby, the leader killed at once: seconds from the kill to
    the standby leading and to the decision being in the zone at the primary."""
    name = f"r{i}.failover.example"
    body = {
        "target": name,
        "scope": "domain",
        "action": "block",
        "reason": "bench",
        "reference": f"BENCH-{i}",
        "source": "hotline",
    }
    status, _ = _call("POST", f"{standby.api}/v1/decisions", token, body)
    if status != 201:
        raise RuntimeError(f"decision refused: HTTP {status}")
    killed = time.monotonic()
    leader.kill()
    leading = _until(lambda: standby.leads(token), 30, "the standby leads")
    published = _until(lambda: _in_zone(primary, name), 30, "published")
    return leading - killed, published - killed


def run(rounds: int) -> dict[str, list[float]]:
    """``rounds`` leader kills; per round the seconds from the kill to the standby leading
    and to the decision it got being in the zone at the primary."""
    out: dict[str, list[float]] = {"leading": [], "published": []}
    server = start_postgres()
    primary = None
    agents: list[_Agent] = []
    try:
        with tempfile.TemporaryDirectory(prefix="edgeagent-bench-ha-") as tmp:
            base = Path(tmp)
            password = secrets.token_urlsafe(16)
            dsn = server.create_database("bench", "bench", password)
            (base / "db.password").write_text(password, encoding="utf-8")
            (base / "db.password").chmod(0o600)
            bootstrap_zones(base / "zones", ZoneRelease(DesiredState(0, (), ()), RPZ, 1))
            primary = start_primary(base / "primary", base / "zones", [])
            (base / "update.secret").write_text(primary.extra["update_secret"], encoding="utf-8")
            (base / "update.secret").chmod(0o600)
            agents = [_config(base, f"central-{i}", dsn, primary) for i in (1, 2)]
            create = [AGENT, "token", "create", "--role", "analyst", "--name", "bench"]
            token = subprocess.run(
                [*create, "-c", str(agents[0].config)], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
            leader, standby = agents
            leader.start(base / "central-1.log")
            _until(lambda: leader.leads(token), 20, "first leader")
            standby.start(base / "central-2.log")
            for i in range(rounds):
                leading, published = _round(i, leader, standby, token, primary)
                out["leading"].append(leading)
                out["published"].append(published)
                leader.start(base / f"central-{agents.index(leader) + 1}.log")
                leader, standby = standby, leader
    finally:
        for agent in agents:
            agent.kill()
        if primary is not None:
            primary.stop()
        server.remove()
    return out


def rows(quick: bool) -> list[dict[str, Any]]:
    result = run(1 if quick else 5)
    anchor = "goal: leader kill -9 -> the new leader has published <= 15 s"
    published, leading = result["published"], result["leading"]
    n = len(published)
    return [
        {
            "figure": f"leader kill -9 -> new leader published (worst of {n})",
            "value": max(published),
            "unit": "s",
            "goal": "<= 15 s",
            "anchor": anchor,
        },
        {
            "figure": f"leader kill -9 -> new leader published (median of {n})",
            "value": statistics.median(published),
            "unit": "s",
            "goal": "",
            "anchor": anchor,
        },
        {
            "figure": f"leader kill -9 -> standby leads (worst of {n})",
            "value": max(leading),
            "unit": "s",
            "goal": "",
            "anchor": "default leader settings",
        },
    ]


if __name__ == "__main__":
    print(rows("--quick" in sys.argv))
