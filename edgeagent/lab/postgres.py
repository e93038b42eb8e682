"""A throwaway PostgreSQL 15 server for the integration tests and the benchmarks.

:func:`start_postgres` runs ``initdb`` into a new directory and starts ``postgres`` in the
foreground as a direct child (like every lab daemon), listening on one loopback TCP port
with its unix socket in the same directory. Durability settings stay at their defaults
(``fsync``, ``synchronous_commit``): figures measured on it are honest ones. As root, the
server runs as the ``postgres`` system user (PostgreSQL refuses to run as root), which
then owns the directory. Logins: the superuser over the unix socket without a password
(``trust``, only reachable through the 0700 directory); every TCP login with a password
(``scram-sha-256``). :meth:`PostgresServer.stop` is a fast shutdown; :meth:`remove` also
deletes the directory.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent.lab.daemons import HOST, DaemonError, free_tcp_port, wait_listening

if TYPE_CHECKING:
    from psycopg import sql

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
"""Where Debian's ``postgresql-15`` puts ``initdb`` and ``postgres`` (not on PATH)."""

SUPERUSER = "postgres"
_SERVER_USER = "postgres"  # the system user the server runs as when we are root


def binary(name: str) -> str:
    for directory in BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise DaemonError(f"{name} not found: install the Debian package postgresql-15")
    return found


def server_user() -> pwd.struct_passwd | None:
    """The account to run the server as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SERVER_USER)
    except KeyError:
        raise DaemonError("no 'postgres' user: install the Debian package postgresql-15") from None


def run_as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def private_dir(directory: Path, account: pwd.struct_passwd | None) -> Path:
    """``directory``, created, mode 0700 and owned by the server's account."""
    directory.mkdir(parents=True, exist_ok=True)
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
    directory.chmod(0o700)
    return directory


def initdb(data: Path, account: pwd.struct_passwd | None) -> None:
    """A new cluster in ``data``: the superuser over the unix socket without a password,
    every TCP login with one (``scram-sha-256``)."""
    init = subprocess.run(
        [
            binary("initdb"),
            "--pgdata",
            str(data),
            "--username",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",  # a throwaway cluster: its creation need not survive a power cut
        ],
        capture_output=True,
        check=False,
        cwd=data.parent,
        **run_as(account),
    )
    if init.returncode != 0:
        text = (init.stdout + init.stderr).decode(errors="replace")[-3000:]
        raise DaemonError(f"initdb failed:\n{text}")


def run_admin(conninfo: str, *statements: sql.Composed) -> None:
    """Run statements on ``conninfo``, each on its own (CREATE DATABASE cannot run in a
    transaction block)."""
    import psycopg  # the postgresql extra: only needed once a server runs

    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def database_statements(name: str, owner: str, password: str) -> list[sql.Composed]:
    """A new login role with ``password`` and a new empty database ``name`` it owns."""
    from psycopg.sql import SQL, Identifier, Literal

    return [
        SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(Identifier(owner), Literal(password)),
        SQL("CREATE DATABASE {} OWNER {}").format(Identifier(name), Identifier(owner)),
    ]


@dataclass
class PostgresServer:
    """A running server; ``workdir`` holds ``data/``, the socket and ``postgres.log``."""

    workdir: Path
    port: int
    proc: subprocess.Popen[bytes]
    host: str = HOST

    @property
    def log(self) -> Path:
        return self.workdir / "postgres.log"

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """The superuser over the unix socket (no password)."""
        return f"host={self.workdir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def dsn(self, dbname: str, user: str) -> str:
        """A TCP connection string for ``user`` (who needs a password) to ``dbname``."""
        return f"host={self.host} port={self.port} dbname={dbname} user={user}"

    def admin(self, *statements: sql.Composed) -> None:
        """Run statements as the superuser (see :func:`run_admin`)."""
        run_admin(self.admin_conninfo(), *statements)

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A new empty database owned by a new login role; return its TCP dsn."""
        self.admin(*database_statements(name, owner, password))
        return self.dsn(name, owner)

    def drop_database(self, name: str, owner: str) -> None:
        """Drop a database made by :meth:`create_database` (connections are cut) and its role."""
        from psycopg.sql import SQL, Identifier

        self.admin(
            SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(name)),
            SQL("DROP ROLE IF EXISTS {}").format(Identifier(owner)),
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the superuser can log in (the port opens before startup ends)."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.admin_conninfo(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if not self.running() or time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
                    raise DaemonError(f"postgres not accepting logins ({exc}):\n{tail}") from None
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), then SIGKILL. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres(
    workdir: Path | None = None, *, settings: dict[str, str] | None = None
) -> PostgresServer:
    """``initdb`` into ``workdir`` (default: a new directory under the system temp dir)
    and start the server on a free loopback port; ``settings`` are extra ``-c`` options."""
    account = server_user()
    workdir = private_dir(workdir or Path(tempfile.mkdtemp(prefix="edgeagent-pg-")), account)
    data = workdir / "data"
    log = workdir / "postgres.log"
    initdb(data, account)
    port = free_tcp_port()
    options = {
        "listen_addresses": HOST,
        "unix_socket_directories": str(workdir),
        **(settings or {}),
    }
    argv = [binary("postgres"), "-D", str(data), "-p", str(port)]
    for key, value in options.items():
        argv += ["-c", f"{key}={value}"]
    with log.open("wb") as fh:
        if account is not None:
            os.fchown(fh.fileno(), account.pw_uid, account.pw_gid)
        proc = subprocess.Popen(
            argv, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir, **run_as(account)
        )
    server = PostgresServer(workdir, port, proc)
    try:
        wait_listening(proc, "postgres", [(HOST, port)], log)
        server.wait_ready()
    except BaseException:
        with contextlib.suppress(Exception):
            server.remove()
        raise
    return server


def store_section(dsn: str, password: str, secrets_dir: Path, **extra: float) -> str:
    """The ``[store]`` section of an agent on ``dsn``; the password goes into a 0600 file
    in ``secrets_dir`` (``pg.password``), which the section names. ``extra`` adds keys
    (e.g. ``connect_timeout_seconds=2``)."""
    secret = secrets_dir / "pg.password"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    lines = ["[store]", 'backend = "postgresql"', f'dsn = "{dsn}"', f'password_file = "{secret}"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"
