"""A fleet of 32 real resolvers under one running agent (``edgeagent run``).

One hidden primary ``named`` (the shipped ``named.conf.rpz-primary-unbound``) takes the
agent's UPDATEs and feeds 26 BIND secondaries (``named.conf.rpz-secondary``) and 6
Unbound resolvers (``unbound-rpz-primary.conf``) by NOTIFY + IXFR, in two regions.
With 5 of them killed, a decision is still accepted by the primary at once, the dead
ones are reported by ``GET /v1/fleet``, ``/readyz`` and the metrics, and the rest serve
it. With the primary stopped while a decision is made, the agent retries the publish
(twice at least) and publishes it when the primary is back, without a new decision.
A killed resolver started again serves the current serial.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgeagent.lab.daemons import HOST, restart
from edgeagent.rpz.publishers.base import ResolverTarget, query_all
from tests.support.agent import AGENT, http_json
from tests.support.api import decision_body
from tests.support.polling import wait_for
from tests.support.resolvers import AgentFleet, agent_fleet

pytestmark = pytest.mark.integration

CANARY = "canary.edgeagent.example"
BIND_COUNT, UNBOUND_COUNT = 26, 6
KILLED = ("bind-03", "bind-11", "bind-19", "unbound-02", "unbound-05")


class Fleet(AgentFleet):
    """The running fleet, with what the tests ask of it."""

    def targets(self, names: list[str]) -> list[ResolverTarget]:
        return [ResolverTarget(n, HOST, self.resolvers[n].port) for n in names]

    def live(self) -> list[str]:
        return sorted(n for n, d in self.resolvers.items() if d.running())

    def serials(self, names: list[str]) -> dict[str, int | None]:
        return {r.target.name: r.serial for r in query_all(self.targets(names), CANARY, 0.5)}

    def status(self) -> dict[str, Any]:
        code, body = http_json("GET", f"{self.api}/v1/status", self.noc)
        assert code == 200, body
        rpz: dict[str, Any] = body["publishers"]["rpz"]
        return rpz

    def primary_serial(self) -> int | None:
        serial: int | None = self.status()["publishers"]["hidden-primary"]["serial"]
        return serial

    def decide(self, target: str) -> None:
        code, body = http_json(
            "POST", f"{self.api}/v1/decisions", self.analyst, decision_body(target)
        )
        assert code == 201, body

    def all_serve(self, serial: int, timeout: float) -> None:
        def done() -> bool:
            return set(self.serials(self.live()).values()) == {serial}

        wait_for(f"every live resolver at serial {serial}", done, timeout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    names = [f"bind-{i:02d}" for i in range(BIND_COUNT)]
    names += [f"unbound-{i:02d}" for i in range(UNBOUND_COUNT)]
    with agent_fleet(tmp_path_factory.mktemp("fleet-scale"), names, CANARY) as running:
        f = Fleet(**vars(running))
        start_serial = wait_for("the first publish", f.primary_serial, 20)
        f.all_serve(start_serial, 30)
        wait_for(
            "a verification that saw every resolver",
            lambda: all(m["reachable"] for m in _fleet(f)["members"]),
            15,
        )
        try:
            yield f
        finally:
            running.primary = f.primary  # restarted by a test: the fleet stops this one


def metric(f: Fleet, name: str, resolver: str) -> float:
    code, text = http_json("GET", f"{f.metrics}/metrics")
    assert code == 200
    for line in str(text).splitlines():
        if line.startswith(f'{name}{{resolver="{resolver}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} for {resolver}")


def test_dead_resolvers_neither_delay_publishing_nor_hide(fleet: Fleet) -> None:
    for name in KILLED:
        fleet.resolvers[name].stop()
    before = fleet.primary_serial()
    started = time.monotonic()
    fleet.decide("fleet-one.example")
    serial = wait_for(
        "the primary to accept the decision",
        lambda: (s := fleet.primary_serial()) != before and s,
        5,
    )
    accepted = time.monotonic() - started
    assert accepted < 1.0, f"decision -> primary accepted took {accepted:.2f} s"
    fleet.all_serve(serial, 20)

    def dead_reported() -> dict[str, Any] | None:
        code, body = http_json("GET", f"{fleet.api}/v1/fleet", fleet.noc)
        assert code == 200, body
        down = {m["name"] for m in body["members"] if m["reachable"] is False}
        return body if down >= set(KILLED) else None

    body = wait_for("the dead resolvers in /v1/fleet", dead_reported, 15)
    members = {m["name"]: m for m in body["members"]}
    assert {n for n, m in members.items() if not m["reachable"]} == set(KILLED), members
    assert len(members) == BIND_COUNT + UNBOUND_COUNT
    live = members["bind-04"]
    assert (live["kind"], live["region"], live["lag"], live["canary_ok"]) == (
        "bind",
        "south",
        0,
        True,
    )
    assert live["confirmed"] == serial
    assert members["unbound-00"]["kind"] == "unbound"
    assert members["bind-03"]["confirmed"] is not None  # seen before it died
    assert body["enforcers"]["rpz"]["pending_version"] is None
    # The operator's view of the same: one line per target, the dead ones DOWN, exit 1.
    shown = subprocess.run(
        [AGENT, "fleet", "status", "--api", fleet.api],
        env={**os.environ, "EDGEAGENT_TOKEN": fleet.noc},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shown.returncode == 1, shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:]}
    assert {n for n, row in rows.items() if "DOWN" in row} == set(KILLED), shown.stdout
    assert rows["bind-04"][1:4] == ["rpz", "bind", "south"], shown.stdout
    for name in KILLED:
        assert metric(fleet, "edgeagent_rpz_resolver_reachable", name) == 0
    assert metric(fleet, "edgeagent_rpz_resolver_reachable", "bind-04") == 1
    assert metric(fleet, "edgeagent_rpz_resolver_confirmed_age_seconds", "bind-04") == 0

    # A dead resolver is a readiness reason, once past the grace period, not a failure.
    def unready() -> str | None:
        code, ready = http_json("GET", f"{fleet.metrics}/readyz")
        return str(ready) if code == 503 else None

    assert "resolver bind-03 unreachable" in wait_for("/readyz to name the dead", unready, 15)


def test_a_decision_made_while_the_primary_is_down_is_published_when_it_returns(
    fleet: Fleet,
) -> None:
    before = fleet.primary_serial()
    fleet.primary.stop()
    try:
        fleet.decide("fleet-two.example")
        wait_for(
            "the publish to fail and wait for a retry",
            lambda: _fleet(fleet)["enforcers"]["rpz"]["pending_version"],
            10,
        )
        # Retried on its own, without a new decision, and never taken while it is down.
        wait_for(
            "two retries of the publish",
            lambda: _fleet(fleet)["enforcers"]["rpz"]["retries"] >= 2,
            30,
        )
        assert fleet.primary_serial() == before
    finally:
        fleet.primary = restart(fleet.primary)
    serial = wait_for(
        "the retried publish (no new decision)",
        lambda: (s := fleet.primary_serial()) != before and s,
        40,
    )
    fleet.all_serve(serial, 20)
    assert _fleet(fleet)["enforcers"]["rpz"]["pending_version"] is None


def test_a_restarted_resolver_gets_the_current_serial(fleet: Fleet) -> None:
    names = ["bind-03", "unbound-02"]
    for name in names:
        fleet.resolvers[name].stop()  # already stopped when the whole module runs
    before = fleet.primary_serial()
    fleet.decide("fleet-three.example")  # a version they miss while down
    serial = wait_for(
        "the primary to accept the decision",
        lambda: (s := fleet.primary_serial()) != before and s,
        10,
    )
    for name in names:
        fleet.resolvers[name] = restart(fleet.resolvers[name])
    seen: dict[str, int | None] = {}

    def current() -> bool:
        seen.update(fleet.serials(names))
        return set(seen.values()) == {serial}

    try:
        wait_for("the restarted resolvers at the current serial", current, 20)
    except AssertionError as exc:
        raise AssertionError(f"serial {serial} wanted, seen {seen}") from exc


def _fleet(fleet: Fleet) -> dict[str, Any]:
    code, body = http_json("GET", f"{fleet.api}/v1/fleet", fleet.noc)
    assert code == 200, body
    result: dict[str, Any] = body
    return result
