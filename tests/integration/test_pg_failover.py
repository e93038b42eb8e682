"""kill -9 of the database primary under two agents, for each failover engine
(pg_auto_failover, Patroni on etcd): the engine promotes the synchronous standby, the
agents reconnect through their multi-host connection string and writes resume; no
decision answered 201 is lost (RPO 0), none is stored twice, the audit chain verifies.
While no server accepts writes the API answers 503 with Retry-After and an error naming
``store.dsn``, ``/readyz`` is not ready and says why, and each agent keeps enforcing its
last good state (its zone file stays complete and in place).

The kill is the loss of the primary's machine: its supervisor (``pg_autoctl`` keeper or
Patroni) and its PostgreSQL are SIGKILLed together; with PostgreSQL alone killed the
supervisor would restart it in place.

Then the old primary rejoins (its supervisor started again on its data: rewound,
following the new primary) while writes go on, and becomes the synchronous standby
again; and with the coordinator lost (pg_auto_failover's monitor, or etcd) the pair keeps
accepting writes, synchronously.

The default run uses each engine's tuned timers (config/postgresql/monitor.tuned.conf,
config/postgresql/patroni.tuned.yml); ``EDGEAGENT_LONG=1`` adds the same runs with the
engines' own defaults.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgeagent.lab.pgha import ENGINES, PgCluster, start_pg_cluster
from edgeagent.store.postgresql.connect import Database
from edgeagent.store.postgresql.store import PostgresStore
from tests.support.agent import create_token, http_json, running_agent
from tests.support.faults import AgentFiles, decision, zone_serial, zonefile_agent
from tests.support.fuzzing import LONG
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

TIMERS = [True, False] if LONG else [True]
# Within this the agents write again after the kill. pg_auto_failover's defaults take
# about 50 s (a node is unhealthy after 20 s, then the lost primary gets 30 s to demote);
# Patroni's at most ttl 30 s plus the promotion.
RECOVERY_SECONDS = {
    ("pg_auto_failover", True): 60.0,
    ("pg_auto_failover", False): 150.0,
    ("patroni", True): 60.0,
    ("patroni", False): 90.0,
}


@pytest.fixture(
    params=[(engine, tuned) for engine in ENGINES for tuned in TIMERS],
    ids=lambda p: f"{p[0]}-{'tuned' if p[1] else 'defaults'}",
)
def cluster(request: pytest.FixtureRequest) -> Iterator[PgCluster]:
    engine, tuned = request.param
    c = start_pg_cluster(engine=engine, tuned=tuned)
    try:
        yield c
    finally:
        c.remove()


@dataclass
class Posting:
    """Decisions posted in turn to every agent from a thread, until stopped."""

    apis: list[str]
    token: str
    prefix: str = "f"  # of the names posted
    accepted: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            if not self.post(i):
                time.sleep(0.1)

    def post(self, i: int) -> bool:
        """Post the ``i``-th decision (to the agents in turn); whether it got a 201."""
        name = f"{self.prefix}{i}.example"
        sent = time.monotonic()
        status, body, retry_after = _post(self.apis[i % len(self.apis)], self.token, name)
        if status == 201:
            self.accepted.append(name)
            return True
        self.refused.append(Refusal(sent, status, json.dumps(body), retry_after))
        return False

    def refused_since(self, moment: float) -> list[Refusal]:
        return [r for r in self.refused if r.sent >= moment]


@dataclass(frozen=True)
class Refusal:
    """A decision not answered 201: when it was sent and what came back."""

    sent: float
    status: int
    body: str
    retry_after: str | None


def _post(api: str, token: str, name: str) -> tuple[int, object, str | None]:
    req = urllib.request.Request(
        f"{api}/v1/decisions", data=json.dumps(decision(name)).encode(), method="POST"
    )
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get("Retry-After")
    except OSError as exc:
        return 0, str(exc), None


def _agents(tmp_path: Path, dsn: str, password: str) -> list[AgentFiles]:
    secret = tmp_path / "pg.password"
    secret.write_text(password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    store = (
        f'backend = "postgresql"\ndsn = "{dsn}"\npassword_file = "{secret}"\n'
        "connect_timeout_seconds = 2\n"
    )
    return [zonefile_agent(tmp_path / name, store=store) for name in ("a", "b")]


def _status(agent: AgentFiles, token: str) -> dict[str, object]:
    status, body = http_json("GET", f"{agent.api}/v1/status", token)
    assert status == 200, body
    database = body["database"]
    assert isinstance(database, dict)
    return database


def _synchronous_standby(database: dict[str, object]) -> bool:
    """A standby streams and commits wait for it."""
    standbys = database["standbys"]
    assert isinstance(standbys, list)
    return database["synchronous"] is True and any(s["synchronous"] for s in standbys)


def _not_ready_reasons(agent: AgentFiles) -> list[str] | None:
    status, body = http_json("GET", f"http://127.0.0.1:{agent.metrics_port}/readyz")
    return body["reasons"] if status == 503 else None


def test_primary_killed_standby_promoted_nothing_acknowledged_lost(
    cluster: PgCluster, tmp_path: Path
) -> None:
    password = secrets.token_urlsafe(16)
    dsn = cluster.create_database("edgeagent_ha", "agent_ha", password)
    agents = _agents(tmp_path, dsn, password)
    token = create_token(agents[0].config, "analyst", "ana")
    noc = create_token(agents[0].config, "noc", "noc")
    old_primary, new_primary = cluster.nodes[0], cluster.nodes[1]
    with contextlib.ExitStack() as stack:
        for n, agent in enumerate(agents):
            stack.enter_context(
                running_agent(agent.config, agent.metrics_port, tmp_path / f"agent{n}.log")
            )
        for agent in agents:
            wait_for("the agent ready", lambda a=agent: _not_ready_reasons(a) is None, 30)
            database = _status(agent, noc)
            assert database["primary"] == old_primary.address
            assert database["synchronous"] is True, database
            assert database["standbys"], database

        posting = Posting([a.api for a in agents], token)
        poster = threading.Thread(target=posting.run)
        poster.start()
        try:
            wait_for("decisions accepted", lambda: len(posting.accepted) >= 20, 30)
            # Only the leader publishes (each agent has a zone directory of its own here).
            wait_for("the first zone", lambda: any(a.zone.exists() for a in agents), 30)
            acknowledged_before_kill = len(posting.accepted)
            # All was well before the kill (read before it: kill() returns once the port
            # is closed, and the request it cut off may be refused by then).
            refused_before_kill = list(posting.refused)
            killed_at = time.monotonic()
            cluster.nodes[0].kill()
            assert not refused_before_kill, refused_before_kill

            # No server takes writes yet: 503 with Retry-After, not ready, and the
            # enforcement in place stays as it was.
            refusals = wait_for("a refusal", lambda: posting.refused_since(killed_at), 30)
            # Every one, the request cut off by the kill included.
            assert all(r.status == 503 for r in posting.refused), posting.refused
            first = refusals[0]
            assert "store.dsn" in first.body, first
            assert "store-unavailable" in first.body, first
            assert first.retry_after is not None
            assert int(first.retry_after) > 0
            reasons = wait_for("/readyz not ready", lambda: _not_ready_reasons(agents[0]), 15)
            assert any(r.startswith("database unreachable: store.dsn") for r in reasons), reasons
            for agent in agents:
                if agent.zone.exists():
                    zone_serial(agent.zone)  # complete, still in place

            # Writes resume on the promoted standby.
            resumed = len(posting.accepted)
            wait_for(
                "writes accepted again",
                lambda: len(posting.accepted) > resumed + 10,
                RECOVERY_SECONDS[cluster.engine, cluster.tuned],
            )
            resumed_after = time.monotonic() - killed_at
            print(f"{cluster.engine}: writes resumed {resumed_after:.1f} s after kill -9")
        finally:
            posting.stop.set()
            poster.join(timeout=60)
        assert cluster.primary() is new_primary
        for agent in agents:
            database = wait_for(
                "the agent on the new primary",
                lambda a=agent: (d := _status(a, noc))["primary"] == new_primary.address and d,
                10,
            )
            assert database["reachable"] is True
            wait_for("ready again", lambda a=agent: _not_ready_reasons(a) is None, 30)
        last = posting.accepted[-1]
        wait_for(
            "the last decision enforced by the leader",
            lambda: any(a.zone.exists() and last in a.zone.read_text() for a in agents),
            30,
        )

        # The old primary rejoins as the standby; writes keep working meanwhile.
        rejoining = Posting([a.api for a in agents], token, prefix="r")
        poster = threading.Thread(target=rejoining.run)
        poster.start()
        rejoined_from = time.monotonic()
        try:
            cluster.rejoin(old_primary)
            wait_for(
                "the old primary the synchronous standby",
                lambda: _synchronous_standby(_status(agents[0], noc)),
                60,
            )
        finally:
            rejoining.stop.set()
            poster.join(timeout=60)
        print(f"old primary the synchronous standby {time.monotonic() - rejoined_from:.1f} s on")
        assert rejoining.accepted, "no write while the old primary rejoined"
        assert not rejoining.refused, rejoining.refused
        assert cluster.primary() is new_primary

        # The coordinator lost: no failover possible, but the pair goes on, synchronously.
        cluster.coordinator.kill()
        cluster.wait_headless()
        headless = Posting([a.api for a in agents], token, prefix="m")
        for i in range(10):
            headless.post(i)
        assert len(headless.accepted) == 10, headless.refused
        for agent in agents:  # each agent's view of the database is refreshed in turn
            wait_for(
                "every agent to see the synchronous standby",
                lambda agent=agent: _synchronous_standby(_status(agent, noc)),
                15,
            )

    store = PostgresStore(Database(dsn, lambda: password))
    try:
        stored = Counter(d.reference for d in store.list_decisions(limit=100_000))
        assert store.verify_audit().ok
    finally:
        store.close()
    acknowledged = posting.accepted + rejoining.accepted + headless.accepted
    lost = [n for n in acknowledged if stored[f"CASE-{n}"] != 1]
    assert not lost, lost
    assert acknowledged_before_kill >= 20
