"""kill -9 of the daemon at random points of decision -> store -> compile -> publish.

Each cycle starts ``edgeagent run``, posts decisions (domains into the RPZ zone file,
URLs into the proxy index) and SIGKILLs it after a random delay. A real resolver (the
shipped BIND resolver snippet) loads the zone files the daemon writes, reloaded by the
publisher's ``reload_command``. After every kill the zone file in place parses
completely (old or new serial, never partial), the resolver answers the canary from a
complete zone at a serial no newer than the file's and never older than before, and the
proxy index opens with a valid checksum; at the end every decision answered 201 is in
the store exactly once, the audit chain verifies, and the restarted daemon publishes
them all, up to the resolver. 20 cycles by default, 200 with ``EDGEAGENT_LONG=1``.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest

from edgeagent.config import load_config
from edgeagent.lab.daemons import HOST
from edgeagent.lab.resolvers import start_named
from edgeagent.model import DesiredState
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ResolverTarget, ZoneRelease, query_canary
from edgeagent.store import open_store
from tests.support.agent import AGENT, create_token, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.faults import AgentFiles, decision, index_ok, zone_serial, zonefile_agent
from tests.support.figures import record
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

CYCLES = 200 if os.environ.get("EDGEAGENT_LONG") == "1" else 20
# The zones and files of the shipped resolver snippet (named.conf.rpz-resolver).
POLICY, EXCEPTIONS = "rpz.edgeagent.invalid", "rpz-exceptions.edgeagent.invalid"
SNIPPET_FILES = {POLICY: "rpz.zone", EXCEPTIONS: "rpz-exceptions.zone"}
CANARY = "canary.edgeagent.example"


def resolver_serial(port: int) -> int:
    """The canary's serial as the resolver answers it (it must answer)."""
    answer = query_canary(ResolverTarget("named", HOST, port), CANARY)
    assert answer.answered, "the resolver did not answer the canary"
    assert answer.serial is not None, answer
    return answer.serial


def test_kill_9_at_random_points_loses_nothing_and_leaves_old_or_new(tmp_path: Path) -> None:
    require_binary("named")
    zones = tmp_path / "zones"
    zones.mkdir()
    # The publisher writes <zone>.zone; the snippet loads rpz.zone: a link, followed at
    # each load, so the resolver reads whatever file was renamed into place last.
    first = ZoneRelease(
        DesiredState(0, (), ()),
        RpzSettings(zone=POLICY, exception_zone=EXCEPTIONS, canary=CANARY),
        1,
    )
    (zones / f"{POLICY}.zone").write_text("".join(first.policy_text()))
    (zones / f"{EXCEPTIONS}.zone").write_text("".join(first.exception_text()))
    for zone, name in SNIPPET_FILES.items():
        (zones / name).symlink_to(f"{zone}.zone")
    named = start_named(tmp_path / "named", zones)
    reload = ", ".join(f'"{a}"' for a in named.reload_argv)
    agent = zonefile_agent(
        tmp_path,
        rpz=f'zone = "{POLICY}"\nexception_zone = "{EXCEPTIONS}"\n',
        publisher=f"reload_command = [{reload}]\n",
        zone=POLICY,
    )
    try:
        _cycles(tmp_path, agent, named.port)
    finally:
        named.stop()


def _cycles(tmp_path: Path, agent: AgentFiles, resolver_port: int) -> None:
    config, metrics_port, api = agent.config, agent.metrics_port, agent.api
    zone, index = agent.zone, agent.index
    token = create_token(config, "analyst", "ana")
    accepted: list[str] = []
    last_domain = ""
    rng = random.Random(13)
    serials: list[int] = []
    served: list[int] = [resolver_serial(resolver_port)]
    survived = 0
    for cycle in range(CYCLES):
        with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
            timer = threading.Timer(rng.uniform(0.0, 0.6), proc.kill)
            timer.start()
            i = 0
            while proc.poll() is None:
                name = f"c{cycle}-{i}.example"
                scope = "url" if i % 3 == 2 else "domain"
                try:
                    status, _ = http_json(
                        "POST", f"{api}/v1/decisions", token, decision(name, scope)
                    )
                except OSError:
                    break  # killed mid-request: not answered, may or may not be stored
                if status == 201:
                    accepted.append(name)
                    if scope == "domain":
                        last_domain = name
                i += 1
            timer.join()
            proc.wait()
        if zone.exists():
            serials.append(zone_serial(zone, POLICY))  # raises on a partial zone
            # The resolver serves a complete zone: the last one loaded, never ahead of
            # the file in place and never behind what it served before.
            served.append(resolver_serial(resolver_port))
            assert served[-2] <= served[-1] <= serials[-1], (served, serials)
        if index.exists():
            assert index_ok(index)
        survived += 1
    assert serials == sorted(serials), "a serial went backwards after a restart"

    verify = subprocess.run(
        [AGENT, "audit", "verify", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    settings = load_config(config)
    store = open_store(settings.store, settings.agent.state_dir)
    try:
        stored = Counter(d.reference for d in store.list_decisions(limit=100_000))
    finally:
        store.close()
    lost = [n for n in accepted if stored[f"CASE-{n}"] != 1]
    record(
        "faults",
        "kill9",
        {
            "cycles": CYCLES,
            "survived": survived,
            "decisions": len(accepted),
            "lost": len(lost),
            "resolver_serials": len(set(served)),
        },
    )
    assert not lost, lost

    with running_agent(config, metrics_port, tmp_path / "daemon.log"):
        wait_for("every decision published", lambda: last_domain in zone.read_text(), 30)
        final = zone_serial(zone, POLICY)
        wait_for(
            "the resolver at the last serial",
            lambda: resolver_serial(resolver_port) == final,
            30,
        )
    print(f"kill -9: {survived} cycles survived, {len(accepted)} decisions kept")
