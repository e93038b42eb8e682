"""The database as the agent sees it: which server it writes to, and that server's standbys.

Asked of the primary the pool is connected to (libpq chose it from the connection
string's hosts): its address, ``synchronous_commit``, and one row per standby of
``pg_stat_replication``. The role needs ``pg_monitor`` (or ``pg_read_all_stats``) to see
the standbys' state and lag; without it they are listed with unknown lag.
"""

from __future__ import annotations

from edgeagent.errors import StoreError
from edgeagent.store.base import DatabaseStatus, StandbyStatus
from edgeagent.store.postgresql.connect import Connection, Pool

BACKEND = "postgresql"

_STANDBYS = """
    SELECT application_name, coalesce(state, 'unknown'), coalesce(sync_state, 'unknown'),
           extract(epoch FROM replay_lag)::float8,
           pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
    FROM pg_stat_replication ORDER BY application_name
"""


def database_status(pool: Pool, timeout: float) -> DatabaseStatus:
    """The status through one pooled connection; unreachable if none comes in ``timeout``."""
    try:
        return pool.run(_status(pool, timeout))
    except StoreError as exc:
        return DatabaseStatus(BACKEND, reachable=False, error=str(exc))


async def _status(pool: Pool, timeout: float) -> DatabaseStatus:
    async with pool.connection("reading the replication status", timeout) as conn:
        return await _read(conn)


async def _read(conn: Connection) -> DatabaseStatus:
    row = await (await conn.execute("SELECT current_setting('synchronous_commit')")).fetchone()
    synchronous_commit = str(row[0]) if row else ""
    found = await (await conn.execute(_STANDBYS)).fetchall()
    standbys = tuple(
        StandbyStatus(
            name=str(name),
            state=str(state),
            synchronous=sync_state in ("sync", "quorum"),
            replay_lag_seconds=None if lag_s is None else float(lag_s),
            replay_lag_bytes=None if lag_b is None else int(lag_b),
        )
        for name, state, sync_state, lag_s, lag_b in found
    )
    return DatabaseStatus(
        BACKEND,
        primary=_address(conn.info.host, conn.info.port),
        synchronous_commit=synchronous_commit,
        standbys=standbys,
    )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
