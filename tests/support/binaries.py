"""The external programs a test needs: found, or the test FAILS naming the package.

A missing daemon is never a skip: ``./dev test`` and CI install every program the suite
uses, so its absence is a broken machine, not an optional feature.
"""

from __future__ import annotations

import os
import shutil

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
    "knotc": "knot",
    "knotd": "knot",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "sniproxy": "sniproxy",
    "chromium": "chromium",
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
    "systemd-tmpfiles": "systemd",
    "gcc": "gcc",
    "unshare": "util-linux",
}

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
