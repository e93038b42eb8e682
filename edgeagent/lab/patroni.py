"""The ``patroni`` engine of :mod:`edgeagent.lab.pgha`: etcd and two Patroni nodes.

:func:`start_patroni` starts, on loopback ports and in one new directory, a one-member
etcd (the coordinator: it holds the leader key, with a time to live) and two Patroni
daemons, each supervising its PostgreSQL 15. The first bootstraps the cluster (``initdb``)
and takes the leader key; the second is copied from it (``pg_basebackup``) and becomes its
synchronous standby. The settings are those of the shipped
``config/postgresql/patroni.node1.yml``: ``synchronous_mode`` (a commit is acknowledged
only once the synchronous standby has it, and only that standby may be promoted),
``failsafe_mode`` (with etcd lost the primary keeps its role while it reaches the other
node), ``use_pg_rewind``; every node includes ``postgresql.edgeagent.conf``.

Timers: Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10) unless ``tuned``,
which applies ``config/postgresql/patroni.tuned.yml``.

Patroni starts PostgreSQL in a session of its own; :meth:`PgNode.kill` SIGKILLs both.
Logins as in :mod:`edgeagent.lab.postgres`; the replication role and the superuser (which
``pg_rewind`` uses) are trusted on 127.0.0.1 so the lab needs no password files for them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edgeagent.lab.daemons import HOST, DaemonError, free_tcp_port
from edgeagent.lab.pgha import (
    CONFIG_DIR,
    NODE_SETTINGS,
    Account,
    PgCluster,
    PgNode,
    Supervised,
    server_path,
    spawn,
    wait_until,
    writable,
)
from edgeagent.lab.postgres import BIN_DIRS, SUPERUSER, private_dir, server_user

SCOPE = "edgeagent"
TUNED_TIMERS = "patroni.tuned.yml"
REPLICATOR = "replicator"

DEFAULT_TIMERS = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}
"""Patroni's own defaults, written out so that a run says what it used."""

DCS_SETTINGS: dict[str, Any] = {
    "synchronous_mode": True,
    "synchronous_mode_strict": False,
    "failsafe_mode": True,
    "postgresql": {"use_pg_rewind": True},
}
"""The cluster-wide settings other than the timers, as in the shipped patroni.node1.yml
(tests/integration/test_patroni_config.py holds them equal)."""

_LAB_HBA = [
    "local all all trust",
    "local replication all trust",
    f"host replication {REPLICATOR} {HOST}/32 trust",
    f"host all {SUPERUSER} {HOST}/32 trust",
    f"host all all {HOST}/32 scram-sha-256",
]

# The standby's log line once it took the leader key (ha.py: enforce_primary_role).
_TOOK_LEADER_KEY = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*(acquired session lock as a leader|"
    r"promoted self to leader by acquiring session lock)"
)


@dataclass
class PatroniNode(PgNode):
    """A Patroni daemon (its REST API on ``api_port``) and its PostgreSQL."""

    api_port: int = 0

    @property
    def config(self) -> Path:
        return self.workdir / "patroni.json"

    def status(self) -> dict[str, Any]:
        """``GET /patroni``: the node's state as its Patroni sees it ({}: no answer)."""
        url = f"http://{HOST}:{self.api_port}/patroni"
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as r:
            status = json.loads(r.read())
            return status if isinstance(status, dict) else {}
        return {}

    def api(self, path: str) -> int:
        """The HTTP status of ``GET path`` on the REST API (0: no answer)."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.api_port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0


@dataclass
class PatroniCluster(PgCluster):
    """etcd (``coordinator``) and the two Patroni nodes."""

    @property
    def engine(self) -> str:
        return "patroni"

    def patroni_nodes(self) -> list[PatroniNode]:
        return [n for n in self.nodes if isinstance(n, PatroniNode)]

    def detected_after(self, killed: datetime) -> float:
        """The first log line of a node saying it took the leader key after ``killed``:
        the lost primary's key expired and the standby won the race for it."""
        for node in self.patroni_nodes():
            for line in node.log.read_text(errors="replace").splitlines():
                match = _TOOK_LEADER_KEY.match(line)
                if match is None:
                    continue
                # Patroni logs local time, with milliseconds.
                at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").astimezone()
                if at >= killed:
                    return (at - killed).total_seconds()
        raise DaemonError("no Patroni node took the leader key after the kill")

    def wait_headless(self, timeout: float = 60.0) -> None:
        """Until the primary's Patroni, having failed to renew its leader key, keeps its
        role in failsafe mode (it reached the standby's Patroni)."""
        primary = self.primary()
        assert isinstance(primary, PatroniNode)
        wait_until(
            lambda: primary.status().get("failsafe_mode_is_active") is True,
            timeout,
            "the primary never went failsafe",
            primary,
        )

    def wait_key_renewed(self, timeout: float = 60.0) -> None:
        """Return right after the primary renewed its leader key (the lease's time to
        live jumped back up): the primary lost now leaves the key its longest life, the
        slowest failover."""
        key = base64.b64encode(f"/service/{SCOPE}/leader".encode()).decode()
        (leader,) = self._etcd("/v3/kv/range", {"key": key})["kvs"]
        lease = {"ID": leader["lease"]}
        deadline = time.monotonic() + timeout
        last = int(self._etcd("/v3/lease/timetolive", lease)["TTL"])
        while time.monotonic() < deadline:
            ttl = int(self._etcd("/v3/lease/timetolive", lease)["TTL"])
            if ttl > last:
                return
            last = ttl
            time.sleep(0.02)
        raise DaemonError(f"the leader key was not renewed within {timeout:g} s")

    def _etcd(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One call of etcd's JSON gateway."""
        url = f"http://{self.coordinator.address}{path}"
        req = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 - http:// built here
            answer = json.loads(resp.read())
        assert isinstance(answer, dict)
        return answer

    def rejoin(self, node: PgNode, timeout: float = 120.0) -> None:
        """Patroni again on its data: it rewinds a former primary (``pg_rewind``) and
        follows the new one; returns once it is the synchronous standby."""
        assert isinstance(node, PatroniNode)
        _run_patroni(node, server_user())
        wait_until(lambda: node.api("/synchronous") == 200, timeout, "no rejoin", node)


def start_patroni(
    workdir: Path | None = None, *, tuned: bool = False, timeout: float = 120.0
) -> PatroniCluster:
    """etcd, primary and synchronous standby on free loopback ports under ``workdir``
    (default: a new temporary directory); returns once the standby is in sync."""
    for program in ("patroni", "etcd"):
        if shutil.which(program) is None:
            raise DaemonError(
                f"{program} not found: install the Debian packages patroni and etcd-server"
            )
    account = server_user()
    root = private_dir(workdir or Path(tempfile.mkdtemp(prefix="edgeagent-patroni-")), account)
    etcd = Supervised("etcd", private_dir(root / "etcd", account), free_tcp_port())
    cluster = PatroniCluster(root, etcd, tuned=tuned)
    timers = load_timers(CONFIG_DIR / TUNED_TIMERS) if tuned else DEFAULT_TIMERS
    try:
        _start_etcd(etcd, account, timeout)
        primary, standby = (_new_node(root, name, account) for name in ("node1", "node2"))
        cluster.nodes += [primary, standby]
        for node in (primary, standby):
            _write_config(node, etcd, timers, account)
        # The first node bootstraps alone, so that it is the one that takes the leader key.
        _run_patroni(primary, account)
        wait_until(lambda: writable(primary), timeout, "no primary", primary)
        _run_patroni(standby, account)
        wait_until(
            lambda: standby.api("/synchronous") == 200,
            timeout,
            "the standby never became synchronous",
            standby,
        )
    except BaseException:
        cluster.remove()
        raise
    return cluster


def load_timers(path: Path) -> dict[str, int]:
    """The ``key: integer`` lines of a shipped timers file (comments ignored)."""
    timers: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([a-z_]+):\s*(\d+)\s*(#.*)?", line.strip())
        if match is not None:
            timers[match[1]] = int(match[2])
    if set(timers) != set(DEFAULT_TIMERS):
        raise DaemonError(f"{path} must set exactly {', '.join(DEFAULT_TIMERS)}")
    return timers


def _new_node(root: Path, name: str, account: Account) -> PatroniNode:
    directory = private_dir(root / name, account)
    return PatroniNode(name, directory, free_tcp_port(), api_port=free_tcp_port())


def _start_etcd(etcd: Supervised, account: Account, timeout: float) -> None:
    """A one-member etcd on loopback (production runs three, on three machines)."""
    peer = f"http://{HOST}:{free_tcp_port()}"
    client = f"http://{etcd.address}"
    argv = [
        "etcd",
        "--name=lab",
        f"--data-dir={etcd.workdir / 'data'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=lab={peer}",
        "--initial-cluster-state=new",
    ]
    spawn(etcd, account, argv, {"PATH": server_path(), "LANG": "C.UTF-8"})
    wait_until(lambda: _etcd_healthy(etcd), timeout, "etcd not healthy", etcd)


def _etcd_healthy(etcd: Supervised) -> bool:
    url = f"http://{etcd.address}/health"
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as resp:
        return bool(json.loads(resp.read()).get("health") == "true")
    return False


def _write_config(
    node: PatroniNode, etcd: Supervised, timers: dict[str, int], account: Account
) -> None:
    """The node's Patroni config, as JSON (which YAML reads)."""
    config: dict[str, Any] = {
        "scope": SCOPE,
        "name": node.name,
        "restapi": {
            "listen": f"{HOST}:{node.api_port}",
            "connect_address": f"{HOST}:{node.api_port}",
        },
        "etcd3": {"hosts": [etcd.address]},
        "bootstrap": {
            "dcs": {**timers, **DCS_SETTINGS},
            # --no-sync: a throwaway cluster, as in edgeagent.lab.postgres.
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "no-sync"],
        },
        "postgresql": {
            "listen": node.address,
            "connect_address": node.address,
            "data_dir": str(node.data),
            "bin_dir": str(BIN_DIRS[0]),
            "pgpass": str(node.workdir / "pgpass"),
            "use_unix_socket": True,
            "custom_conf": str(CONFIG_DIR / NODE_SETTINGS),
            "parameters": {"unix_socket_directories": str(node.workdir)},
            "pg_hba": _LAB_HBA,
            # pg_basebackup asks for an immediate checkpoint, not a spread one.
            "basebackup": [{"checkpoint": "fast"}, "no-sync"],
            "authentication": {
                "superuser": {"username": SUPERUSER},
                "replication": {"username": REPLICATOR, "password": "lab-only"},
            },
        },
    }
    node.config.write_text(json.dumps(config, indent=2), encoding="utf-8")
    if account is not None:
        os.chown(node.config, account.pw_uid, account.pw_gid)
    node.config.chmod(0o600)


def _run_patroni(node: PatroniNode, account: Account) -> None:
    spawn(node, account, ["patroni", str(node.config)], {"PATH": server_path(), "LANG": "C.UTF-8"})
