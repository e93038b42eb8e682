"""Two real agents on one real PostgreSQL 15: kill -9 and pause of the leader.

Both agents (``edgeagent run``) share the database, a real BIND hidden primary (RFC 2136
UPDATE with TSIG), one proxy index path, and the takedown peers (a real Unbound serving
the hosted names, an SMTP sink). Every agent serves the API; only the leader publishes,
locates hosted URLs and sends notices.

- kill -9 of the leader amid 200 decisions posted to both agents: every decision that
  got a 201 is stored exactly once, the audit chain verifies (the same answer from every
  agent), the standby takes over and publishes the whole policy with no new decision,
  and each takedown notice goes out under one idempotency key, claimed before sending:
  only a notice the dead leader had handed to the mail server but not yet recorded as
  sent goes out again, from the new leader, under the same key.
  The RPZ serial is central state: the new leader continues above the old leader's
  serial from the database (no serial file of its own), and the zone's SOA moves up.
- a paused leader (SIGSTOP, SIGCONT after the standby took over) steps down when it
  wakes; what it would still write is refused, and the zone stays the new leader's.
- kill -9 of the leader while its notice hangs at the mail server (SIGSTOP): the key was
  claimed but never confirmed, so the new leader sends the notice under the same key; the
  mail server gets it, every copy with that one key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsig
import psycopg
import pytest

from edgeagent.lab.daemons import RunningDaemon
from edgeagent.lab.postgres import PostgresServer
from edgeagent.lab.resolvers import TRANSFER_KEY, UPDATE_KEY, bootstrap_zones, start_primary
from edgeagent.model import DesiredState
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease
from edgeagent.rpz.zonetext import serial_gt
from tests.support.agent import AGENT, create_token, http_json
from tests.support.faults import hung
from tests.support.polling import wait_for
from tests.support.ports import free_port
from tests.support.resolvers import stop_all
from tests.support.segment_peers import running

pytestmark = pytest.mark.integration

RPZ = RpzSettings()  # the zone names the shipped hidden-primary snippet serves
ZONE = RPZ.zone + "."
DECISIONS = 200
HOSTED = [(f"h{i}.hosted.test", "A", f"192.0.2.{10 + i}") for i in range(10)]
# The listed domains resolve too (in the peers' static hosted.test zone), outside the own
# space: the locator looks every block up, and a name nobody serves costs it a timeout.
LISTED = [
    (f"d{i}.listed.hosted.test", "A", f"198.51.100.{i % 250}") for i in range(DECISIONS + 100)
]
CUSTOMERS = "prefix,customer_id,service_id,contact\n192.0.2.0/24,cust-a,web-1,noc@cust-a.example\n"


@dataclass
class Agent:
    name: str
    config: Path
    api: str
    metrics: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [AGENT, "run", "-c", str(self.config)], stdout=out, stderr=out
            )
        wait_for(f"{self.name} answers", lambda: _get(f"{self.metrics}/healthz")[0] == 200, 30)

    def status(self, token: str) -> dict[str, Any]:
        status, body = http_json("GET", f"{self.api}/v1/status", token)
        assert status == 200, body
        return dict(body)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Cluster:
    base: Path
    agents: list[Agent]
    primary: RunningDaemon
    tokens: dict[str, str]
    mail: Path
    database: str  # libpq connection string of the agents' database, with the password
    peers_pid: int  # the process serving SMTP (SIGSTOP hangs every mail)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def soa_serial(self) -> int:
        """The policy zone's serial at the primary (asked with the transfer key)."""
        key = dns.tsig.Key(TRANSFER_KEY, self.primary.extra["transfer_secret"])
        query = dns.message.make_query(ZONE, "SOA")
        query.use_tsig({key.name: key}, keyname=key.name)
        p = self.primary
        answer = dns.query.tcp(query, p.host, port=p.port, timeout=5)
        return int(answer.answer[0][0].serial)

    def leader(self) -> Agent | None:
        for agent in self.agents:
            if agent.proc is None or agent.proc.poll() is not None:
                continue
            with contextlib.suppress(OSError, AssertionError):
                if agent.status(self.tokens["supervisor"])["leader"]:
                    return agent
        return None

    def zone_owners(self) -> set[str]:
        """Every owner in the policy zone at the primary (AXFR signed with the transfer key)."""
        key = dns.tsig.Key(TRANSFER_KEY, self.primary.extra["transfer_secret"])
        p = self.primary
        xfr = dns.query.xfr(p.host, ZONE, port=p.port, keyring=key, keyname=key.name, timeout=10)
        owners = set()
        for message in xfr:
            for rrset in message.answer:
                owners.add(rrset.name.relativize(dns.name.from_text(ZONE)).to_text())
        return owners

    def notice_keys(self) -> Counter[str]:
        return Counter({key: len(times) for key, times in self.notice_copies().items()})

    def notice_copies(self) -> dict[str, list[float]]:
        """When each copy of each notice reached the sink (wall clock), by key."""
        copies: dict[str, list[float]] = {}
        for path in self.mail.glob("*.eml"):
            msg = message_from_bytes(path.read_bytes())
            copies.setdefault(str(msg["X-EdgeAgent-Idempotency-Key"]), []).append(
                path.stat().st_mtime
            )
        return {key: sorted(times) for key, times in copies.items()}


def _get(url: str) -> tuple[int, Any]:
    return http_json("GET", url)


def _config(
    base: Path, name: str, dsn: str, primary: RunningDaemon, peers: dict[str, Any]
) -> Agent:
    api, metrics = free_port(udp=False), free_port(udp=False)
    secret = base / "update.secret"
    config = base / f"{name}.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{base / name / "state"}"
log_format = "json"
[store]
backend = "postgresql"
dsn = "{dsn}"
password_file = "{base / "db.password"}"
leader_poll_seconds = 0.5
leader_session_timeout_seconds = 2
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
tsig_secret_file = "{secret}"
retries = 2
[proxy]
enabled = true
index_path = "{base / "proxy" / "index.bin"}"
stop_page_listen_port = {free_port(udp=False)}
[takedown]
enabled = true
own_prefixes = ["192.0.2.0/24"]
resolvers = [{{ host = "127.0.0.1", port = {peers["dns_port"]} }}]
[[takedown.customers]]
kind = "csv"
path = "{base / "customers.csv"}"
[takedown.notifiers.hosting-mail]
kind = "smtp"
host = "127.0.0.1"
port = {peers["smtp_port"]}
starttls = false
sender = "ntd@isp.example"
recipients = ["hosting@isp.example"]
""",
        encoding="utf-8",
    )
    return Agent(
        name, config, f"http://127.0.0.1:{api}", f"http://127.0.0.1:{metrics}", base / f"{name}.log"
    )


@pytest.fixture(scope="module")
def cluster(
    pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The database, the primary, the peers and two agents' configs (not started), shared
    by the tests in order: the kill -9 test leaves the second agent leading."""
    tmp_path = tmp_path_factory.mktemp("ha")
    password = secrets.token_urlsafe(16)
    name = f"edgeagent_ha_{os.getpid()}_{secrets.token_hex(3)}"
    dsn = pg_server.create_database(name, name, password)
    (tmp_path / "db.password").write_text(password, encoding="utf-8")
    (tmp_path / "db.password").chmod(0o600)
    (tmp_path / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (tmp_path / "proxy").mkdir()
    bootstrap_zones(tmp_path / "zones", ZoneRelease(DesiredState(0, (), ()), RPZ, 1))
    primary = start_primary(tmp_path / "primary", tmp_path / "zones", [])
    secret_file = tmp_path / "update.secret"
    secret_file.write_text(primary.extra["update_secret"], encoding="utf-8")
    secret_file.chmod(0o600)
    agents: list[Agent] = []
    try:
        with running(tmp_path / "peers", HOSTED + LISTED, secrets.token_bytes(16)) as peers:
            agents = [_config(tmp_path, n, dsn, primary, peers) for n in ("central-1", "central-2")]
            tokens = {
                role: create_token(agents[0].config, role, f"{role}-1")
                for role in ("analyst", "supervisor")
            }
            database = f"{dsn} password={password}"
            mail = tmp_path / "peers" / "mail"
            yield Cluster(tmp_path, agents, primary, tokens, mail, database, peers["pid"])
    finally:
        for agent in agents:
            agent.stop()
        stop_all(primary)
        pg_server.drop_database(name, name)


def _post_decisions(
    cluster: Cluster,
    start: int,
    count: int,
    stop: threading.Event | None = None,
    to: Agent | None = None,
) -> None:
    """Post decisions to ``to`` or every agent in turn (a dead one's requests fail)."""
    analyst = cluster.tokens["analyst"]
    for i in range(start, start + count):
        agent = to or cluster.agents[i % len(cluster.agents)]
        if i % 20 == 0:
            host = HOSTED[(i // 20) % len(HOSTED)][0]
            body = _decision(f"http://{host}/page-{i}.html", "url", i)
        else:
            body = _decision(f"d{i}.listed.hosted.test", "domain", i)
        try:
            status, answer = http_json("POST", f"{agent.api}/v1/decisions", analyst, body)
        except OSError:
            continue  # killed mid-request: not answered
        if status == 201:
            cluster.accepted.append({**body, "id": answer["id"]})
        if stop is not None and stop.is_set():
            return


def _decision(target: str, scope: str, i: int) -> dict[str, Any]:
    return {
        "target": target,
        "scope": scope,
        "action": "block",
        "reason": "ha test",
        "reference": f"CASE-{i}",
        "source": "hotline",
    }


def _audit_verify(config: Path) -> str:
    """What ``edgeagent audit verify`` says with ``config`` (it must say the chain holds)."""
    done = subprocess.run(
        [AGENT, "audit", "verify", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _zone_has_every_domain(cluster: Cluster) -> bool:
    owners = cluster.zone_owners()
    wanted = {d["target"] for d in cluster.accepted if d["scope"] == "domain"}
    return wanted <= owners


def test_kill_9_of_the_leader_amid_200_decisions(cluster: Cluster) -> None:
    first, second = cluster.agents
    first.start()
    wait_for("the first agent leads", lambda: cluster.leader() is first, 20)
    second.start()
    noc = cluster.tokens["supervisor"]

    def both_listed() -> dict[str, Any] | None:
        ha = dict(second.status(noc)["ha"])
        return ha if len(ha["agents"]) == 2 else None

    ha = wait_for("both agents listed", both_listed, 20)
    assert second.status(noc)["leader"] is False
    assert ha["role"] == "standby"
    ready = _get(f"{second.metrics}/readyz")
    assert ready == (200, {"ready": True, "reasons": [], "leader": False, "role": "standby"})

    stop = threading.Event()
    poster = threading.Thread(target=_post_decisions, args=(cluster, 0, DECISIONS, stop))
    poster.start()
    wait_for("a third of the decisions", lambda: len(cluster.accepted) >= DECISIONS // 3, 60)
    serial_before = cluster.soa_serial()
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    killed_at, killed_wall = time.monotonic(), time.time()
    first.proc.wait()
    poster.join(120)
    assert not poster.is_alive()

    # Every 201 is stored exactly once.
    assert len(cluster.accepted) > DECISIONS // 2
    status, listed = http_json(
        "GET", f"{second.api}/v1/decisions?limit=1000", cluster.tokens["supervisor"]
    )
    assert status == 200
    stored = Counter(d["reference"] for d in listed["items"])
    assert all(stored[d["reference"]] == 1 for d in cluster.accepted), "a 201 lost or doubled"

    # The standby leads and publishes the whole policy with no new decision.
    wait_for("the standby leads", lambda: cluster.leader() is second, 15)
    wait_for("every accepted domain at the primary", lambda: _zone_has_every_domain(cluster), 30)
    print(f"leader kill -9 -> new leader published in {time.monotonic() - killed_at:.1f} s")
    assert second.status(noc)["ha"]["epoch"] >= 2
    # The new leader went on from the serial in the database, not from a file of its own.
    serial_after = cluster.soa_serial()
    assert serial_gt(serial_after, serial_before), (serial_before, serial_after)
    wait_for(
        "the database holds the live serial",
        lambda: cluster.query("SELECT serial FROM rpz_serial")[0][0] == cluster.soa_serial(),
        10,
    )
    assert not list(cluster.base.glob("central-*/state/rpz-serial.json"))

    # The audit chain verifies, from the API and the CLI of every agent alike.
    status, verify = http_json("GET", f"{second.api}/v1/audit/verify", cluster.tokens["supervisor"])
    assert status == 200
    assert verify["ok"], verify
    answers = {_audit_verify(a.config) for a in cluster.agents}
    assert len(answers) == 1

    # Tickets for the hosted URLs, each notice sent once.
    hosted = {d["reference"] for d in cluster.accepted if d["scope"] == "url"}

    def notified() -> bool:
        url = f"{second.api}/v1/tickets?limit=1000"
        _, tickets = http_json("GET", url, cluster.tokens["supervisor"])
        done = {t["reference"] for t in tickets["items"] if t["last_notified_at"]}
        return hosted <= done

    wait_for("every hosted case notified", notified, 60)
    copies = cluster.notice_copies()
    assert copies, "no notice reached the sink"
    # One key per notice. A notice the dead leader had handed to the mail server but not
    # yet recorded as sent goes out again from the new leader under the same key (the
    # receiver drops the repeat by key); nothing else is ever repeated.
    for key, times in copies.items():
        assert len(times) <= 2, (key, times)
        if len(times) == 2:
            # The first copy from the old leader (written by the sink at most a moment
            # after the kill), the second from the new one.
            assert times[0] < killed_wall + 1, (key, times)
            assert times[1] > killed_wall, (key, times)


def test_a_paused_leader_wakes_fenced_and_steps_down(cluster: Cluster) -> None:
    # After the kill -9 test the second agent leads; the first comes back as a standby.
    second, first = cluster.agents
    noc = cluster.tokens["supervisor"]
    sent_before = cluster.notice_keys()
    second.start()
    wait_for("the leader is up", lambda: cluster.leader() is first, 20)
    assert first.proc is not None
    _post_decisions(cluster, DECISIONS, 6)
    wait_for("published by the leader", lambda: _zone_has_every_domain(cluster), 30)
    # One chain, one answer, whichever agent is asked (the leader may append a row
    # between the two reads: the count is not compared, the verdict is).
    verified = [
        http_json("GET", f"{a.api}/v1/audit/verify", cluster.tokens["supervisor"])
        for a in (first, second)
    ]
    verdicts = [(code, body["ok"], body["first_bad_row"]) for code, body in verified]
    assert verdicts[0] == verdicts[1]
    assert verified[0][0] == 200
    assert verified[0][1]["ok"] is True

    first.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for("the standby leads", lambda: second.status(noc)["leader"], 20)
        _post_decisions(cluster, DECISIONS + 10, 3, to=second)
        wait_for("published by the new leader", lambda: _zone_has_every_domain(cluster), 30)
        owners = cluster.zone_owners()
    finally:
        first.proc.send_signal(signal.SIGCONT)
    # Awake, it still believes it leads until its next poll, which finds its session gone.
    wait_for("the woken agent steps down", lambda: first.status(noc)["leader"] is False, 20)
    assert second.status(noc)["leader"] is True
    _, metrics = _get(f"{first.metrics}/metrics")
    assert "edgeagent_leader 0.0" in metrics
    assert "edgeagent_leader_changes_total 2.0" in metrics
    # Its metrics name the new leader and each agent's role, by agent id.
    woken, leader = (a.status(noc)["ha"]["name"] for a in (first, second))
    exported = (
        f'edgeagent_ha_leader_info{{agent="{leader}"}} 1.0',
        f'edgeagent_ha_agent_role{{agent="{leader}",role="leader"}} 1.0',
        f'edgeagent_ha_agent_role{{agent="{woken}",role="standby"}} 1.0',
    )
    wait_for(
        "the woken agent's metrics name the new leader",
        lambda: all(line in _get(f"{first.metrics}/metrics")[1] for line in exported) or None,
        10,
    )
    time.sleep(2)  # anything the woken agent still had under way has run into the fence
    assert cluster.zone_owners() == owners
    keys = cluster.notice_keys()
    # No notice repeated by the woken agent (the kill -9 test's repeats are its own).
    assert all(n <= max(1, sent_before[k]) for k, n in keys.items()), (keys, sent_before)


def test_kill_9_of_the_leader_mid_send_the_next_leader_sends_the_notice(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    standby = next(a for a in cluster.agents if a is not leader)
    if standby.proc is None or standby.proc.poll() is not None:
        standby.start()
    noc = cluster.tokens["supervisor"]
    wait_for("the standby is up", lambda: standby.status(noc)["leader"] is False, 20)
    reference = "CASE-mid-send"
    body = {**_decision(f"http://{HOSTED[3][0]}/mid-send.html", "url", 0), "reference": reference}
    unconfirmed = "SELECT key FROM notice_keys WHERE sent_at IS NULL"
    earlier = set(cluster.query(unconfirmed))  # a fenced agent's tries, if any

    def claimed_now() -> list[tuple[Any, ...]]:
        return [k for k in cluster.query(unconfirmed) if k not in earlier]

    with hung(cluster.peers_pid):  # the mail server accepts connections, answers nothing
        status, _ = http_json("POST", f"{leader.api}/v1/decisions", cluster.tokens["analyst"], body)
        assert status == 201
        claimed = wait_for("the notice claimed, its send hanging", claimed_now, 30)
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
    [(key,)] = claimed
    wait_for("the standby leads", lambda: cluster.leader() is standby, 15)

    def mails_for_ticket() -> list[str]:
        return [
            str(m["X-EdgeAgent-Idempotency-Key"])
            for m in (message_from_bytes(p.read_bytes()) for p in cluster.mail.glob("*.eml"))
            if str(m["X-EdgeAgent-Idempotency-Key"]).startswith(key.split(":v")[0] + ":")
        ]

    keys = wait_for("the new leader sent the notice", mails_for_ticket, 30)
    assert set(keys) == {key}, keys  # the same key the dead leader claimed
    wait_for("the key confirmed", lambda: not claimed_now(), 10)
