"""A PostgreSQL 15 primary with a synchronous standby, failed over by pg_auto_failover.

:func:`start_pg_cluster` starts, on loopback ports and in one new directory, the three
processes of a pg_auto_failover formation: the *monitor* (a small PostgreSQL of its own
that watches the nodes and drives every state change) and two *data nodes*, each a
``pg_autoctl`` keeper supervising its PostgreSQL. The first node is made from ``initdb``
and becomes the primary; the second is copied from it (``pg_basebackup``, run by its
keeper) and becomes its synchronous standby. The monitor then sets
``synchronous_standby_names`` on the primary; ``synchronous_commit = on`` comes from
``config/postgresql/postgresql.edgeagent.conf``, which every data node includes.

Each keeper runs in a session of its own: :meth:`PgCluster.kill` SIGKILLs the whole
session (keeper and PostgreSQL), as the loss of the machine would; killing only the
PostgreSQL would let its keeper restart it. ``tuned=True`` includes
``config/postgresql/monitor.tuned.conf`` into the monitor (faster health checks and
demote timeout); otherwise the engine keeps its defaults.

Logins, as in :mod:`edgeagent.lab.postgres`: the superuser over each node's unix socket
without a password; agents over TCP with a password. The shipped ``pg_hba.conf`` wants
passwords for pg_auto_failover's own roles too; here they are trusted on 127.0.0.1 so the
lab needs no password files for them. As root every process runs as ``postgres``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edgeagent.bundled import bundled_path
from edgeagent.lab.daemons import HOST, DaemonError, free_tcp_port
from edgeagent.lab.postgres import (
    BIN_DIRS,
    SUPERUSER,
    database_statements,
    initdb,
    private_dir,
    run_admin,
    run_as,
    server_user,
)

CONFIG_DIR = bundled_path("config", "postgresql")
"""The shipped PostgreSQL configs (node settings, pg_hba.conf, the tuned monitor)."""

NODE_SETTINGS = "postgresql.edgeagent.conf"
TUNED_MONITOR = "monitor.tuned.conf"
MONITOR_DB = "pg_auto_failover"
NODE_DB = "postgres"  # the database pg_autoctl wants on the nodes: leave the names to the agents

Account = pwd.struct_passwd | None

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
class PgNode:
    """One ``pg_autoctl`` process (monitor or keeper) and the PostgreSQL it runs.

    ``workdir`` holds ``data/`` (PGDATA), the unix socket and ``pg_autoctl.log``.
    """

    name: str
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "pg_autoctl.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """The superuser over the unix socket (no password)."""
        return f"host={self.workdir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the keeper and its PostgreSQL at once (the machine is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Backends of a postmaster killed under them exit on their own; wait for the port.
        _wait(lambda: not _accepts(self), 10, f"{self.name} still answers after SIGKILL")

    def stop(self, timeout: float = 20.0) -> None:
        """``pg_autoctl`` stops its PostgreSQL (fast shutdown) on SIGTERM; then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class PgCluster:
    """The monitor and the two data nodes (``nodes[0]`` started as the primary)."""

    workdir: Path
    monitor: PgNode
    nodes: list[PgNode] = field(default_factory=list)
    tuned: bool = False

    def monitor_uri(self) -> str:
        return f"postgres://autoctl_node@{HOST}:{self.monitor.port}/{MONITOR_DB}?sslmode=disable"

    def dsn(self, dbname: str, user: str) -> str:
        """The agents' connection string: every node, the writable one chosen at connect."""
        hosts = ",".join(HOST for _ in self.nodes)
        ports = ",".join(str(n.port) for n in self.nodes)
        return (
            f"host={hosts} port={ports} dbname={dbname} user={user} target_session_attrs=read-write"
        )

    def states(self) -> dict[str, tuple[str, str]]:
        """Node name -> (reported state, goal state), as the monitor knows them."""
        import psycopg

        with psycopg.connect(self.monitor.admin_conninfo(MONITOR_DB), connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node"
            ).fetchall()
        return {str(name): (str(reported), str(goal)) for name, reported, goal in rows}

    def primary(self) -> PgNode | None:
        """The node that accepts writes now (asked directly, not the monitor)."""
        for node in self.nodes:
            if _accepts(node) and not _in_recovery(node):
                return node
        return None

    def standby(self) -> PgNode | None:
        """A running node other than the primary."""
        primary = self.primary()
        return next((n for n in self.nodes if n is not primary and _accepts(n)), None)

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A database owned by a new login role, on the primary (replicated to the
        standby); the role may read the replication statistics. Return its dsn."""
        from psycopg.sql import SQL, Identifier

        primary = self.primary()
        if primary is None:
            raise DaemonError("no primary to create the database on")
        grant = SQL("GRANT pg_monitor TO {}").format(Identifier(owner))
        run_admin(primary.admin_conninfo(), *database_statements(name, owner, password), grant)
        return self.dsn(name, owner)

    def stop(self) -> None:
        """Stop the data nodes, then the monitor. Idempotent."""
        for node in (*self.nodes, self.monitor):
            node.stop()

    def remove(self) -> None:
        """Stop everything and delete the directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_pg_cluster(
    workdir: Path | None = None, *, tuned: bool = False, timeout: float = 120.0
) -> PgCluster:
    """Monitor, primary and synchronous standby on free loopback ports under ``workdir``
    (default: a new temporary directory); returns once the standby is in sync."""
    pg_autoctl = shutil.which("pg_autoctl")
    if pg_autoctl is None:
        raise DaemonError(
            "pg_autoctl not found: install the Debian package postgresql-15-auto-failover"
        )
    account = server_user()
    root = private_dir(workdir or Path(tempfile.mkdtemp(prefix="edgeagent-pgha-")), account)
    cluster = PgCluster(root, _new_node(root, "monitor", account), tuned=tuned)
    primary, standby = (_new_node(root, name, account) for name in ("node1", "node2"))
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
        _wait(lambda: _monitor_ready(cluster), timeout, "no monitor", cluster.monitor)
        for node in (primary, standby):
            argv = [pg_autoctl, "create", "postgres", "--pgdata", str(node.data)]
            argv += ["--name", node.name, "--dbname", NODE_DB, "--monitor", cluster.monitor_uri()]
            _start(node, account, argv)
            if node is primary:
                _wait(lambda: _reported(cluster, "node1") == "single", timeout, "no primary", node)
        _wait(lambda: _in_sync(cluster), timeout, "the standby never caught up", standby)
    except BaseException:
        cluster.remove()
        raise
    return cluster


def _new_node(root: Path, name: str, account: Account) -> PgNode:
    return PgNode(name, private_dir(root / name, account), free_tcp_port())


def _init_data(node: PgNode, account: Account, include: str | None) -> None:
    """``initdb`` with the lab's pg_hba.conf and, if given, one shipped config included."""
    initdb(node.data, account)
    (node.data / "pg_hba.conf").write_text(_LAB_HBA, encoding="utf-8")
    if include is not None:
        with (node.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"include = '{CONFIG_DIR / include}'\n")


def _start(node: PgNode, account: Account, argv: list[str]) -> None:
    """Run ``pg_autoctl create ... --run`` for ``node`` in a session of its own."""
    argv = [
        *argv,
        "--pgport",
        str(node.port),
        "--listen",
        HOST,
        "--hostname",
        HOST,
        "--skip-pg-hba",  # _LAB_HBA is the whole file
        "--no-ssl",  # loopback only
        "--run",
    ]
    env = {
        # pg_ctl and friends first; not our PATH, whose directories the server's account
        # may not be allowed to read.
        "PATH": os.pathsep.join([*(str(d) for d in BIN_DIRS), "/usr/local/bin:/usr/bin:/bin"]),
        "LANG": "C.UTF-8",
        # pg_autoctl keeps its config and state files under the XDG directories.
        "XDG_CONFIG_HOME": str(node.workdir / "config"),
        "XDG_DATA_HOME": str(node.workdir / "state"),
        "XDG_RUNTIME_DIR": str(node.workdir),
        # The server's unix socket (-k) and where pg_autoctl looks for it.
        "PG_REGRESS_SOCK_DIR": str(node.workdir),
        "PGHOST": str(node.workdir),
    }
    if account is not None:
        env["HOME"] = account.pw_dir
    with node.log.open("wb") as fh:
        if account is not None:
            os.fchown(fh.fileno(), account.pw_uid, account.pw_gid)
        node.proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=node.workdir,
            env=env,
            start_new_session=True,
            **run_as(account),
        )


def _accepts(node: PgNode) -> bool:
    import psycopg

    try:
        psycopg.connect(node.admin_conninfo(), connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def _in_recovery(node: PgNode) -> bool:
    import psycopg

    with psycopg.connect(node.admin_conninfo(), connect_timeout=2) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def _monitor_ready(cluster: PgCluster) -> bool:
    import psycopg

    try:
        cluster.states()
    except psycopg.Error:
        return False
    return True


def _reported(cluster: PgCluster, name: str) -> str | None:
    import psycopg

    try:
        return cluster.states().get(name, (None, None))[0]
    except psycopg.Error:
        return None


def _in_sync(cluster: PgCluster) -> bool:
    """Primary and secondary reached; meanwhile hurry the primary's checkpoints: the
    keeper's ``pg_basebackup`` waits for one, spread over minutes by default."""
    import psycopg

    states = cluster.states()
    if states.get("node1", ("",))[0] == "primary" and states.get("node2", ("",))[0] == "secondary":
        return True
    with contextlib.suppress(psycopg.Error):
        _checkpoint(cluster.nodes[0])
    return False


def _checkpoint(node: PgNode) -> None:
    import psycopg

    with psycopg.connect(node.admin_conninfo(), autocommit=True, connect_timeout=2) as conn:
        conn.execute("CHECKPOINT")


def _wait(ready: Callable[[], bool], timeout: float, what: str, node: PgNode | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if node is not None and node.proc is not None and node.proc.poll() is not None:
            raise DaemonError(f"{what}: pg_autoctl of {node.name} exited:\n{node.tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{node.tail()}" if node is not None else ""
            raise DaemonError(f"{what} within {timeout:g} s{tail}")
        time.sleep(0.5)
