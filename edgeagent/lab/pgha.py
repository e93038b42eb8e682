"""A PostgreSQL 15 primary with a synchronous standby on loopback, failed over by an engine.

Two engines, chosen by name (:data:`ENGINES`) in :func:`start_pg_cluster`:

- ``pg_auto_failover`` (:mod:`edgeagent.lab.pgautofailover`): a monitor (a PostgreSQL of
  its own) decides every state change; a ``pg_autoctl`` keeper supervises each node;
- ``patroni`` (:mod:`edgeagent.lab.patroni`): a Patroni daemon supervises each node and
  the primary holds a leader key with a time to live in etcd.

Either way the cluster has a *coordinator* (the monitor, or etcd), two data nodes
(``nodes[0]`` started as the primary) and the agents' multi-host connection string
(:meth:`PgCluster.dsn`). Every supervisor runs in a session of its own, so that
:meth:`Supervised.kill` SIGKILLs the machine's whole share: supervisor and PostgreSQL
(Patroni starts PostgreSQL in a session of its own; that one is killed too). Killing only
PostgreSQL would let its supervisor restart it: that is not the loss of the primary.

``tuned=True`` uses the shipped faster timers of the engine (config/postgresql/); otherwise
the engine keeps its defaults. As root every process runs as ``postgres``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edgeagent.bundled import bundled_path
from edgeagent.lab.daemons import HOST, DaemonError, free_tcp_port
from edgeagent.lab.postgres import (
    BIN_DIRS,
    SUPERUSER,
    database_statements,
    private_dir,
    run_admin,
    run_as,
)

ENGINES = ("pg_auto_failover", "patroni")
DEFAULT_ENGINE = "pg_auto_failover"

CONFIG_DIR = bundled_path("config", "postgresql")
"""The shipped PostgreSQL configs (node settings, pg_hba.conf, the engines' configs)."""

NODE_SETTINGS = "postgresql.edgeagent.conf"

Account = pwd.struct_passwd | None


@dataclass
class Supervised:
    """One daemon started in a session of its own; ``workdir`` holds its ``daemon.log``."""

    name: str
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "daemon.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL every session of this machine's share at once (the machine is lost)."""
        groups = self._sessions()
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        # Children of a process killed under them exit on their own; wait for the port.
        wait_until(lambda: not _listening(self.port), 10, f"{self.name} still answers")

    def _sessions(self) -> list[int]:
        return [self.proc.pid] if self.running() and self.proc is not None else []

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (the supervisors stop their PostgreSQL, fast shutdown); then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class PgNode(Supervised):
    """A supervisor and the PostgreSQL it runs; ``workdir`` also holds ``data/`` (PGDATA)
    and the unix socket."""

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """The superuser over the unix socket (no password)."""
        return f"host={self.workdir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def _sessions(self) -> list[int]:
        sessions = super()._sessions()
        postmaster = _postmaster_pid(self.data)
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                sessions.append(os.getpgid(postmaster))
        return sorted(set(sessions))


@dataclass
class PgCluster(ABC):
    """The coordinator and the two data nodes (``nodes[0]`` started as the primary)."""

    workdir: Path
    coordinator: Supervised
    nodes: list[PgNode] = field(default_factory=list)
    tuned: bool = False

    @property
    @abstractmethod
    def engine(self) -> str:
        """The engine's name, one of :data:`ENGINES`."""

    @abstractmethod
    def rejoin(self, node: PgNode, timeout: float = 120.0) -> None:
        """Start a lost data node again; returns once it follows the primary again."""

    @abstractmethod
    def detected_after(self, killed: datetime) -> float:
        """Seconds from ``killed`` (aware) to the engine's first sign that it saw the
        primary lost (the monitor's event, the leader key's expiry)."""

    @abstractmethod
    def wait_headless(self, timeout: float = 60.0) -> None:
        """After the coordinator's loss: return once the engine has reacted to it (a
        check of the pair's writes before then would prove nothing)."""

    def dsn(self, dbname: str, user: str) -> str:
        """The agents' connection string: every node, the writable one chosen at connect."""
        hosts = ",".join(HOST for _ in self.nodes)
        ports = ",".join(str(n.port) for n in self.nodes)
        return (
            f"host={hosts} port={ports} dbname={dbname} user={user} target_session_attrs=read-write"
        )

    def primary(self) -> PgNode | None:
        """The node that accepts writes now (asked directly, not the engine)."""
        return next((n for n in self.nodes if writable(n)), None)

    def standby(self) -> PgNode | None:
        """A running node other than the primary."""
        primary = self.primary()
        return next((n for n in self.nodes if n is not primary and accepts(n)), None)

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
        """Stop the data nodes, then the coordinator. Idempotent."""
        for daemon in (*self.nodes, self.coordinator):
            daemon.stop()

    def remove(self) -> None:
        """Stop everything and delete the directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_pg_cluster(
    workdir: Path | None = None,
    *,
    engine: str = DEFAULT_ENGINE,
    tuned: bool = False,
    timeout: float = 120.0,
) -> PgCluster:
    """Coordinator, primary and synchronous standby of ``engine`` on free loopback ports
    under ``workdir`` (default: a new temporary directory); returns once the standby is
    in sync."""
    # The engines' modules import this one: imported here, when one is asked for.
    if engine == "pg_auto_failover":
        from edgeagent.lab.pgautofailover import start_auto_failover

        return start_auto_failover(workdir, tuned=tuned, timeout=timeout)
    if engine == "patroni":
        from edgeagent.lab.patroni import start_patroni

        return start_patroni(workdir, tuned=tuned, timeout=timeout)
    raise DaemonError(f"unknown failover engine {engine!r}: one of {', '.join(ENGINES)}")


def new_node(root: Path, name: str, account: Account) -> PgNode:
    return PgNode(name, private_dir(root / name, account), free_tcp_port())


def server_path() -> str:
    """PATH for the server's account: PostgreSQL's programs first; not our PATH, whose
    directories that account may not be allowed to read."""
    return os.pathsep.join([*(str(d) for d in BIN_DIRS), "/usr/local/bin:/usr/bin:/bin"])


def spawn(daemon: Supervised, account: Account, argv: list[str], env: dict[str, str]) -> None:
    """Run ``argv`` for ``daemon`` in a session of its own, appending to its log."""
    if account is not None:
        env = {**env, "HOME": account.pw_dir}
    with daemon.log.open("ab") as fh:
        if account is not None:
            os.fchown(fh.fileno(), account.pw_uid, account.pw_gid)
        daemon.proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=daemon.workdir,
            env=env,
            start_new_session=True,
            **run_as(account),
        )


def writable(node: PgNode) -> bool:
    """Whether ``node`` runs and accepts writes (asked directly, not the engine): out of
    recovery is not enough, pg_auto_failover keeps a promoted standby read-only
    (``default_transaction_read_only``) until the lost primary's demote timeout is over."""
    import psycopg

    try:
        with psycopg.connect(node.admin_conninfo(), connect_timeout=2) as conn:
            row = conn.execute("SHOW transaction_read_only").fetchone()
    except psycopg.OperationalError:
        return False
    return row is not None and row[0] == "off"


def accepts(node: PgNode) -> bool:
    """Whether ``node``'s PostgreSQL accepts a connection."""
    import psycopg

    try:
        psycopg.connect(node.admin_conninfo(), connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def checkpoint(node: PgNode) -> None:
    import psycopg

    with psycopg.connect(node.admin_conninfo(), autocommit=True, connect_timeout=2) as conn:
        conn.execute("CHECKPOINT")


def wait_until(
    ready: Callable[[], bool], timeout: float, what: str, daemon: Supervised | None = None
) -> None:
    """Poll ``ready`` until true; fail with ``daemon``'s log tail after ``timeout`` or
    once it exited."""
    deadline = time.monotonic() + timeout
    while not ready():
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is not None:
            raise DaemonError(f"{what}: {daemon.name} exited:\n{daemon.tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{daemon.tail()}" if daemon is not None else ""
            raise DaemonError(f"{what} within {timeout:g} s{tail}")
        time.sleep(0.5)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def _postmaster_pid(data: Path) -> int | None:
    """The running postmaster's pid from ``postmaster.pid`` (first line), if any."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    return None
