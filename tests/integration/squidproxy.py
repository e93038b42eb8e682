"""Start the shipped Squid config with the edgeagent helper on loopback (tests, lab).

A thin wrapper over :mod:`edgeagent.lab.proxy` and :mod:`edgeagent.lab.resolvers`
(shared with ``edgeagent lab``), keeping the tests' call shape:
``start_squid(workdir, index, stop_url, hosts)`` renders ``resolvers/squid/squid.conf``,
checks it with ``squid -k parse``, and runs ``squid -N`` in the foreground. Names are
resolved from a ``hosts_file``, or, with ``resolver=ADDR``, through the DNS server at
``ADDR`` port 53 (:func:`start_unfiltered_resolver` starts one). ``listen``/``accel_port``
put the ports on another loopback address. Squid drops to the ``proxy`` user, so
``workdir`` and the index must be readable by it.
"""

from __future__ import annotations

from pathlib import Path

from edgeagent.lab import proxy as _proxy
from edgeagent.lab.proxy import RunningSquid
from edgeagent.lab.resolvers import start_unfiltered_resolver

SQUID_CONF = _proxy.SQUID_CONF
HOST = "127.0.0.1"

__all__ = [
    "HOST",
    "SQUID_CONF",
    "RunningSquid",
    "helper_path",
    "render_conf",
    "start_squid",
    "start_unfiltered_resolver",
]


def helper_path() -> str:
    """Helper command line Squid can run as the ``proxy`` user."""
    return _proxy.helper_command()


def render_conf(
    workdir: Path,
    index: Path,
    stop_url: str,
    hosts: dict[str, str],
    fail_mode: str = "open",
    *,
    listen: str = HOST,
    accel_port: int | None = None,
    resolver: str | None = None,
) -> tuple[Path, int, int]:
    """Write squid.conf + hosts file into ``workdir``; return (conf, proxy port, accel port)."""
    return _proxy.render_squid_conf(
        workdir,
        index,
        stop_url,
        listen=listen,
        accel_port=accel_port,
        resolver=resolver,
        hosts=hosts,
        fail_mode=fail_mode,
    )


def start_squid(
    workdir: Path,
    index: Path,
    stop_url: str,
    hosts: dict[str, str],
    fail_mode: str = "open",
    *,
    listen: str = HOST,
    accel_port: int | None = None,
    resolver: str | None = None,
) -> RunningSquid:
    return _proxy.start_squid(
        workdir,
        index,
        stop_url,
        listen=listen,
        accel_port=accel_port,
        resolver=resolver,
        hosts=hosts,
        fail_mode=fail_mode,
    )
