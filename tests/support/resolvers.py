"""DNS daemons for the tests, on top of :mod:`edgeagent.lab.resolvers`.

The launchers themselves (``start_authoritative``, ``start_named``, ``start_unbound``,
``start_primary``, ...) are the lab's, so that ``edgeagent lab``, the tests and the
benchmarks fill the render module's templates the same way; import them from
:mod:`edgeagent.lab.resolvers` and the process plumbing from :mod:`edgeagent.lab.daemons`.
Here is only what tests add around them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgeagent.lab import RPZ_EXCEPTION_ZONE, RPZ_ZONE
from edgeagent.lab.daemons import HOST, RunningDaemon
from edgeagent.lab.resolvers import (
    UPDATE_KEY,
    bootstrap_zones,
    start_primary,
    start_secondary,
    start_unbound_secondary,
)
from edgeagent.model import DesiredState
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease
from tests.support.agent import agent_listeners_toml, create_token, running_agent
from tests.support.ports import free_port

# The source checkout.
REPO = Path(__file__).resolve().parents[2]


def stop_all(*daemons: RunningDaemon | None) -> None:
    """Stop every daemon given, ignoring ``None`` and errors from ones already gone."""
    for d in daemons:
        if d is not None:
            with contextlib.suppress(Exception):
                d.stop()


@dataclass
class AgentFleet:
    """A hidden primary, its resolvers (by name) and the agent publishing to them."""

    base: Path
    primary: RunningDaemon
    resolvers: dict[str, RunningDaemon]
    api: str
    metrics: str
    analyst: str  # tokens
    noc: str


@contextlib.contextmanager
def agent_fleet(base: Path, names: list[str], canary: str) -> Iterator[AgentFleet]:
    """The hidden primary template (``named.conf.rpz-primary-unbound``), one secondary per
    name (``bind-NN``: BIND, ``unbound-NN``: Unbound, in regions south and north by
    turns) and ``edgeagent run`` UPDATEing the primary (publisher ``hidden-primary``,
    verify and grace 5 s); everything stopped on the way out."""
    settings = RpzSettings(zone=RPZ_ZONE, exception_zone=RPZ_EXCEPTION_ZONE, canary=canary)
    first = ZoneRelease(DesiredState(0, (), ()), settings, 1)
    bootstrap_zones(base / "primary-zones", first)
    ports = {name: free_port() for name in names}
    primary = start_primary(
        base / "primary",
        base / "primary-zones",
        list(ports.values()),
        unbound_clients=f"{HOST};",
        rpz=settings,
    )
    resolvers: dict[str, RunningDaemon] = {}
    fleet: AgentFleet | None = None

    def start(name: str) -> RunningDaemon:
        workdir = base / name
        if name.startswith("unbound"):
            bootstrap_zones(workdir, first)
            return start_unbound_secondary(workdir, primary, ports[name], rpz=settings)
        return start_secondary(workdir, primary, ports[name], rpz=settings)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for name, daemon in zip(names, pool.map(start, names), strict=True):
                resolvers[name] = daemon
        secret = base / "update.secret"
        secret.write_text(primary.extra["update_secret"] + "\n")
        secret.chmod(0o600)
        api_port, metrics_port = free_port(udp=False), free_port(udp=False)
        config = base / "edgeagent.toml"
        config.write_text(_agent_config(base, primary, ports, api_port, metrics_port, canary))
        analyst = create_token(config, "analyst", "fleet-test")
        noc = create_token(config, "noc", "fleet-noc")
        fleet = AgentFleet(
            base,
            primary,
            resolvers,
            f"http://{HOST}:{api_port}",
            f"http://{HOST}:{metrics_port}",
            analyst,
            noc,
        )
        with running_agent(config, metrics_port, base / "agent.log"):
            yield fleet
    finally:
        # A test may have restarted the primary: stop the one running now.
        stop_all(*resolvers.values(), primary if fleet is None else fleet.primary)


def _agent_config(
    base: Path, primary: RunningDaemon, ports: dict[str, int], api: int, met: int, canary: str
) -> str:
    resolvers = "".join(
        f'[[resolvers]]\nname = "{name}"\nhost = "{HOST}"\nport = {port}\n'
        f'kind = "{name.split("-")[0]}"\nregion = "{"north" if i % 2 else "south"}"\n'
        for i, (name, port) in enumerate(sorted(ports.items()))
    )
    return (
        agent_listeners_toml(base / "state", api, met)
        + f"""
[rpz]
zone = "{RPZ_ZONE}"
exception_zone = "{RPZ_EXCEPTION_ZONE}"
canary_name = "{canary}"
verify_interval_seconds = 5
serial_grace_seconds = 5

[publishers.hidden-primary]
kind = "bind-update"
server = "{HOST}"
port = {primary.port}
tsig_key_name = "{UPDATE_KEY}"
tsig_secret_file = "{base / "update.secret"}"
timeout_seconds = 2.0
retries = 1

{resolvers}"""
    )
