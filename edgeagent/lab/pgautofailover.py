"""The ``pg_auto_failover`` engine of :mod:`edgeagent.lab.pgha`.

:func:`start_auto_failover` starts, on loopback ports and in one new directory, the three
processes of a pg_auto_failover formation: the *monitor* (a small PostgreSQL of its own
that watches the nodes and drives every state change: the cluster's coordinator) and two
*data nodes*, each a ``pg_autoctl`` keeper supervising its PostgreSQL. The first node is
made from ``initdb`` and becomes the primary; the second is copied from it
(``pg_basebackup``, run by its keeper) and becomes its synchronous standby. The monitor
then sets ``synchronous_standby_names`` on the primary; ``synchronous_commit = on`` comes
from ``config/postgresql/postgresql.edgeagent.conf``, which every data node includes.

``tuned=True`` includes ``config/postgresql/monitor.tuned.conf`` into the monitor (faster
health checks and demote timeout); otherwise the engine keeps its defaults.

Logins, as in :mod:`edgeagent.lab.postgres`: the superuser over each node's unix socket
without a password; agents over TCP with a password. The shipped ``pg_hba.conf`` wants
passwords for pg_auto_failover's own roles too; here they are trusted on 127.0.0.1 so the
lab needs no password files for them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edgeagent.lab.daemons import HOST, DaemonError
from edgeagent.lab.pgha import (
    CONFIG_DIR,
    NODE_SETTINGS,
    Account,
    PgCluster,
    PgNode,
    checkpoint,
    new_node,
    server_path,
    spawn,
    wait_until,
)
from edgeagent.lab.postgres import initdb, private_dir, server_user

TUNED_MONITOR = "monitor.tuned.conf"
MONITOR_DB = "pg_auto_failover"
NODE_DB = "postgres"  # the database pg_autoctl wants on the nodes: leave the names to the agents

_LAB_HBA = f"""\
local   all           all                                      trust
local   replication   all                                      trust
host    {MONITOR_DB} autoctl_node              {HOST}/32  trust
host    replication   pgautofailover_replicator  {HOST}/32  trust
host    all           pgautofailover_replicator  {HOST}/32  trust
host    all           pgautofailover_monitor     {HOST}/32  trust
host    all           all                        {HOST}/32  scram-sha-256
"""


@dataclass
class AutoFailoverCluster(PgCluster):
    """The monitor (``coordinator``, itself a PostgreSQL) and the two data nodes."""

    @property
    def engine(self) -> str:
        return "pg_auto_failover"

    @property
    def monitor(self) -> PgNode:
        assert isinstance(self.coordinator, PgNode)
        return self.coordinator

    def monitor_uri(self) -> str:
        return f"postgres://autoctl_node@{HOST}:{self.monitor.port}/{MONITOR_DB}?sslmode=disable"

    def states(self) -> dict[str, tuple[str, str]]:
        """Node name -> (reported state, goal state), as the monitor knows them."""
        import psycopg

        with psycopg.connect(self.monitor.admin_conninfo(MONITOR_DB), connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node"
            ).fetchall()
        return {str(name): (str(reported), str(goal)) for name, reported, goal in rows}

    def events(self) -> list[tuple[datetime, str, str]]:
        """The monitor's event log: (when, node name, what happened), oldest first."""
        import psycopg

        with psycopg.connect(self.monitor.admin_conninfo(MONITOR_DB), connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT eventtime, nodename, description FROM pgautofailover.event ORDER BY eventid"
            ).fetchall()
        return [(at, str(name), str(what)) for at, name, what in rows]

    def detected_after(self, killed: datetime) -> float:
        """The monitor's first event calling a node unhealthy."""
        for at, _node, what in self.events():
            if at >= killed and "unhealthy" in what:
                return (at - killed).total_seconds()
        raise DaemonError("the monitor never called the lost primary unhealthy")

    def wait_headless(self, timeout: float = 60.0) -> None:
        """Nothing to wait for: the keepers keep their nodes' roles without the monitor
        (only a change of role needs it)."""

    def rejoin(self, node: PgNode, timeout: float = 120.0) -> None:
        """``pg_autoctl run`` on its data: the keeper rewinds a former primary and follows
        the new one; returns once the monitor reports it ``secondary`` again."""
        _spawn(node, server_user(), [_pg_autoctl(), "run", "--pgdata", str(node.data)])
        wait_until(lambda: _reported(self, node.name) == "secondary", timeout, "no rejoin", node)


def start_auto_failover(
    workdir: Path | None = None, *, tuned: bool = False, timeout: float = 120.0
) -> AutoFailoverCluster:
    """Monitor, primary and synchronous standby on free loopback ports under ``workdir``
    (default: a new temporary directory); returns once the standby is in sync."""
    pg_autoctl = _pg_autoctl()
    account = server_user()
    root = private_dir(workdir or Path(tempfile.mkdtemp(prefix="edgeagent-pgha-")), account)
    cluster = AutoFailoverCluster(root, new_node(root, "monitor", account), tuned=tuned)
    primary, standby = (new_node(root, name, account) for name in ("node1", "node2"))
    cluster.nodes += [primary, standby]
    try:
        # The two initdb runs overlap (the standby is copied from the primary later).
        with ThreadPoolExecutor(2) as pool:
            inits = [
                pool.submit(_init_data, cluster.monitor, account, TUNED_MONITOR if tuned else None),
                pool.submit(_init_data, primary, account, NODE_SETTINGS),
            ]
            for init in inits:
                init.result()
        _start(
            cluster.monitor,
            account,
            [pg_autoctl, "create", "monitor", "--pgdata", str(cluster.monitor.data)],
        )
        wait_until(lambda: _monitor_ready(cluster), timeout, "no monitor", cluster.monitor)
        for node in (primary, standby):
            argv = [pg_autoctl, "create", "postgres", "--pgdata", str(node.data)]
            argv += ["--name", node.name, "--dbname", NODE_DB, "--monitor", cluster.monitor_uri()]
            _start(node, account, argv)
            if node is primary:
                wait_until(
                    lambda: _reported(cluster, "node1") == "single", timeout, "no primary", node
                )
        wait_until(lambda: _in_sync(cluster), timeout, "the standby never caught up", standby)
    except BaseException:
        cluster.remove()
        raise
    return cluster


def _pg_autoctl() -> str:
    found = shutil.which("pg_autoctl")
    if found is None:
        raise DaemonError(
            "pg_autoctl not found: install the Debian package postgresql-15-auto-failover"
        )
    return found


def _init_data(node: PgNode, account: Account, include: str | None) -> None:
    """``initdb`` with the lab's pg_hba.conf and, if given, one shipped config included."""
    initdb(node.data, account)
    (node.data / "pg_hba.conf").write_text(_LAB_HBA, encoding="utf-8")
    if include is not None:
        with (node.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"include = '{CONFIG_DIR / include}'\n")


def _start(node: PgNode, account: Account, argv: list[str]) -> None:
    """Run ``pg_autoctl create ... --run`` for ``node``."""
    where = ["--pgport", str(node.port), "--listen", HOST, "--hostname", HOST]
    # --skip-pg-hba: _LAB_HBA is the whole file; --no-ssl: loopback only.
    _spawn(node, account, [*argv, *where, "--skip-pg-hba", "--no-ssl", "--run"])


def _spawn(node: PgNode, account: Account, argv: list[str]) -> None:
    """Run a ``pg_autoctl`` command for ``node`` in a session of its own."""
    env = {
        "PATH": server_path(),
        "LANG": "C.UTF-8",
        # pg_autoctl keeps its config and state files under the XDG directories.
        "XDG_CONFIG_HOME": str(node.workdir / "config"),
        "XDG_DATA_HOME": str(node.workdir / "state"),
        "XDG_RUNTIME_DIR": str(node.workdir),
        # The server's unix socket (-k) and where pg_autoctl looks for it.
        "PG_REGRESS_SOCK_DIR": str(node.workdir),
        "PGHOST": str(node.workdir),
    }
    spawn(node, account, argv, env)


def _monitor_ready(cluster: AutoFailoverCluster) -> bool:
    import psycopg

    try:
        cluster.states()
    except psycopg.Error:
        return False
    return True


def _reported(cluster: AutoFailoverCluster, name: str) -> str | None:
    import psycopg

    try:
        return cluster.states().get(name, (None, None))[0]
    except psycopg.Error:
        return None


def _in_sync(cluster: AutoFailoverCluster) -> bool:
    """Primary and secondary reached; meanwhile hurry the primary's checkpoints: the
    keeper's ``pg_basebackup`` waits for one, spread over minutes by default."""
    import psycopg

    states = cluster.states()
    if states.get("node1", ("",))[0] == "primary" and states.get("node2", ("",))[0] == "secondary":
        return True
    with contextlib.suppress(psycopg.Error):
        checkpoint(cluster.nodes[0])
    return False
