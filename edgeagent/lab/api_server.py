"""The control API alone, over an existing store, in its own process.

For load tests and the API benchmark: the real app, store, guard and policy engine,
and a policy rebuild after decision writes as the daemon does (at most once every
``rebuild_every`` seconds, in a worker thread; a negative value turns it off), but no
feeds, publishers or scheduler, so what is measured is the API. Being a process of its
own, it can be killed with SIGKILL exactly as the daemon can.

:func:`start_api_server` runs ``python -m edgeagent.lab.api_server STORE PORT
PROTECTED_DIR REBUILD_EVERY`` on 127.0.0.1 and returns once it accepts connections;
SIGTERM or SIGINT stops it. ``PROTECTED_DIR`` is the guard's protected-names directory
(created empty when missing). ``STORE`` is a SQLite store file, or an edgeagent config
file (``*.toml``) whose ``[store]`` section names the store (e.g. a PostgreSQL database).
Decisions need no approval (public reports included).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeagent.api import ApiContext, create_app, start_site
from edgeagent.config import Settings, default_settings, load_config
from edgeagent.decisions import DecisionService
from edgeagent.engine import PolicyEngine
from edgeagent.guard import Guard
from edgeagent.lab.daemons import (
    HOST,
    ProcessGroup,
    free_tcp_port,
    spawn,
    stop_process,
    wait_listening,
)
from edgeagent.limits import DEFAULT_LIMITS
from edgeagent.store import SqliteStore, open_store
from edgeagent.store.base import Store


@dataclass
class RunningApiServer:
    """A started API server process; :meth:`stop` ends it (idempotent)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self, timeout: float = 30.0) -> None:
        stop_process(self.proc, timeout)


def start_api_server(
    store_path: Path,
    protected_dir: Path,
    *,
    rebuild_every: float = 1.0,
    timeout: float = 60.0,
    group: ProcessGroup | None = None,
) -> RunningApiServer:
    """Serve the store at ``store_path`` from a child process; its log lands beside it.

    Waits up to ``timeout`` seconds: the policy is loaded before the port opens.
    """
    port = free_tcp_port()
    argv = [
        sys.executable,
        "-m",
        "edgeagent.lab.api_server",
        str(store_path),
        str(port),
        str(protected_dir),
        str(rebuild_every),
    ]
    proc, log = spawn("api-server", argv, store_path.parent, group)
    wait_listening(proc, "api-server", [(HOST, port)], log, timeout=timeout)
    return RunningApiServer(proc, port, log)


async def serve(
    store_path: Path, host: str, port: int, *, protected_dir: Path, rebuild_every: float
) -> None:
    """Serve the API over the store at ``store_path`` until SIGTERM/SIGINT."""
    store, settings = _open(store_path)
    protected_dir.mkdir(parents=True, exist_ok=True)
    # The agent's own names as the daemon reserves them.
    guard = Guard.load(
        protected_dir, reserved=settings.reserved_names(), policy_zones=settings.policy_zones()
    )
    engine = PolicyEngine(store, guard)
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    service = DecisionService(store, guard, public_needs_approval=False)

    def on_change() -> None:
        loop.call_soon_threadsafe(changed.set)

    ctx = ApiContext(
        store=store,
        decisions=service,
        policy=lambda: engine.current().index,
        on_change=on_change,
    )
    await asyncio.to_thread(engine.current)  # policy loaded before we listen
    # As the daemon does: move the long-lived policy out of the collector's view, or
    # every full collection walks 100k+ entries while requests wait.
    gc.freeze()

    async def rebuild() -> None:
        while True:
            await changed.wait()
            changed.clear()
            await asyncio.to_thread(engine.current)
            await asyncio.sleep(rebuild_every)

    rebuilder = asyncio.create_task(rebuild()) if rebuild_every >= 0 else None
    runner = await start_site(create_app(ctx), host, port, DEFAULT_LIMITS)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if rebuilder is not None:
            rebuilder.cancel()
        await runner.cleanup()
        store.close()


def _open(store_path: Path) -> tuple[Store, Settings]:
    """A config file's store and settings, or a SQLite file on the embedded defaults."""
    if store_path.suffix == ".toml":
        settings = load_config(store_path)
        return open_store(settings.store, settings.agent.state_dir), settings
    return SqliteStore(store_path), default_settings(store_path.parent)


def main(argv: list[str]) -> None:
    """``STORE PORT PROTECTED_DIR [REBUILD_EVERY]`` (see the module docstring)."""
    store_path, port, protected_dir = Path(argv[0]), int(argv[1]), Path(argv[2])
    rebuild_every = float(argv[3]) if len(argv) > 3 else 1.0
    asyncio.run(
        serve(store_path, HOST, port, protected_dir=protected_dir, rebuild_every=rebuild_every)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
