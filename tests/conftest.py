"""Shared test helpers and fixtures.

Helpers (import them: ``from tests.conftest import free_port, require_binary``):

- ``free_port(host="127.0.0.1", *, udp=True) -> int``: a port that is free for TCP and,
  by default, also for UDP on ``host`` right now (DNS daemons bind both).
- ``require_binary(name) -> str``: absolute path of a program the test needs; FAILS the
  test (never skips) naming the Debian package when it is missing, because ``./dev test``
  and CI install every daemon the suite uses.

Fixtures of the same names wrap them for tests that prefer injection:
``free_port_factory`` (a callable) and ``binary`` (a callable).

Tests marked ``slow`` (minutes each) run only with ``--run-slow``, whatever ``-m`` selects:
``pytest -m integration`` leaves them out, ``pytest --run-slow -m slow`` runs just them.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable

import pytest

# Program -> Debian package that provides it, for the failure message.
_PACKAGES = {
    "named": "bind9",
    "named-checkconf": "bind9-utils",
    "named-checkzone": "bind9-utils",
    "rndc": "bind9-utils",
    "dig": "bind9-dnsutils",
    "nsupdate": "bind9-dnsutils",
    "unbound": "unbound",
    "unbound-checkconf": "unbound",
    "unbound-control": "unbound",
    "squid": "squid",
    "pdns_recursor": "pdns-recursor",
    "kresd": "knot-resolver",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "sniproxy": "sniproxy",
    "chromium": "chromium",
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
    "systemd-tmpfiles": "systemd",
}

RUN_SLOW = "--run-slow"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        RUN_SLOW, action="store_true", help="also run the tests marked slow (minutes each)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``slow`` tests unless ``--run-slow`` is given (an option, not a default
    ``-m 'not slow'``, which a ``-m`` on the command line would silently replace)."""
    if config.getoption(RUN_SLOW):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


# Daemons live in sbin, which a non-root PATH often lacks.
_EXTRA_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def require_binary(name: str) -> str:
    """Return the absolute path of program ``name``; fail the calling test if it is absent."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    path = shutil.which(name, path=search)
    if path is None:
        package = _PACKAGES.get(name, "the package that provides it")
        pytest.fail(
            f"required program {name!r} not found (PATH and {', '.join(_EXTRA_DIRS)}); "
            f"install Debian package {package!r} — `./dev test` does this when run as root",
            pytrace=False,
        )
    return path


def free_port(host: str = "127.0.0.1", *, udp: bool = True) -> int:
    """Return a port on ``host`` that nothing listens on now, for TCP (and UDP if ``udp``).

    The kernel picks the TCP port; UDP is then checked on the same number, because DNS
    daemons need both. There is an unavoidable race until the caller binds it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
        if not udp:
            return port
        with socket.socket(family, socket.SOCK_DGRAM) as dgram:
            try:
                dgram.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


@pytest.fixture
def free_port_factory() -> Callable[..., int]:
    """The :func:`free_port` helper as a fixture."""
    return free_port


@pytest.fixture
def binary() -> Callable[[str], str]:
    """The :func:`require_binary` helper as a fixture."""
    return require_binary
