"""Start real ``named`` and ``unbound`` on 127.0.0.1 high ports from the shipped snippets.

A thin wrapper: the code lives in :mod:`edgeagent.lab.daemons` and
:mod:`edgeagent.lab.resolvers`, shared with ``edgeagent lab``::

    auth = start_authoritative(tmp / "auth", {"test": TEST_ZONE})
    bind = start_named(tmp / "bind", zone_dir, forwards={"test": auth.port})
    unb = start_unbound(tmp / "unbound", zone_dir, stubs={"test": auth.port})
    ...
    stop_all(unb, bind, auth)

The resolver configs are exactly ``resolvers/bind/named.conf.rpz-resolver`` and
``resolvers/unbound/unbound-rpz.conf`` with their ``@PLACEHOLDERS@`` filled; the site-local
include carries only test plumbing. ``zone_dir`` must already hold ``rpz.zone`` and
``rpz-exceptions.zone``. Every daemon runs in the foreground as a child process.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from edgeagent.lab.daemons import HOST, RunningDaemon, free_port, render, wait_answering
from edgeagent.lab.daemons import spawn as _spawn
from edgeagent.lab.resolvers import BIND_RESOLVER_SNIPPET as BIND_SNIPPET
from edgeagent.lab.resolvers import UNBOUND_SNIPPET, start_authoritative, start_named, start_unbound
from edgeagent.lab.resolvers import rndc_key as _rndc_key

REPO = Path(__file__).resolve().parents[2]

__all__ = [
    "BIND_SNIPPET",
    "HOST",
    "REPO",
    "UNBOUND_SNIPPET",
    "RunningDaemon",
    "_rndc_key",
    "_spawn",
    "free_port",
    "render",
    "start_authoritative",
    "start_named",
    "start_unbound",
    "stop_all",
    "wait_answering",
]


def stop_all(*daemons: RunningDaemon | None) -> None:
    """Stop every daemon given, ignoring ``None`` and errors from ones already gone."""
    for d in daemons:
        if d is not None:
            with contextlib.suppress(Exception):
                d.stop()
