"""Proxy canary: prove that a proxy refuses the always-listed canary URL right now.

The canary URL is an entry every index carries (a ``url`` decision on a reserved name).
:func:`proxy_canary` asks the proxy for it as an explicit-proxy request and succeeds when
the answer is the stop page: either Squid's ``deny_info`` redirect to ``/blocked`` or a
451/403 response. Every index holds the canary entry, so refusing it proves the helper
works, not that it holds the current policy: the helper therefore answers the canary as
``canary.v<version of its index>`` and :func:`canary_version` reads it back, for the
enforcer to compare with the version it installed. It is blocking (``http.client``);
the daemon calls it through ``asyncio.to_thread`` after each index change and every
minute, and sets ``edgeagent_proxy_canary_ok{proxy=...}``.
"""

from __future__ import annotations

import http.client
import re

STOP_PATH = "/blocked"
CANARY_SOURCE = "canary"
"""Source label of the canary entry: the helper answers it as ``canary.v<version>``."""
_SEEN_VERSION = re.compile(r"[?&]source=" + CANARY_SOURCE + r"\.v(\d+)(?:[&.]|$)")


def proxy_canary(proxy_host: str, proxy_port: int, canary_url: str, timeout: float = 5.0) -> bool:
    """True if the proxy at ``proxy_host:proxy_port`` answers ``canary_url`` with the stop page.

    Any network error, timeout or other answer (the origin's content, a 5xx) is False.
    """
    return canary_version(proxy_host, proxy_port, canary_url, timeout)[0]


def canary_version(
    proxy_host: str, proxy_port: int, canary_url: str, timeout: float = 5.0
) -> tuple[bool, int | None]:
    """(refused with the stop page, the index version the helper answered from).

    The version comes from the redirect's ``source=canary.v<version>``; ``None`` when the
    answer does not carry it (a 451/403 page, an older helper).
    """
    conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
    try:
        conn.request("GET", canary_url, headers={"Cache-Control": "no-cache"})
        resp = conn.getresponse()
        resp.read(65536)
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location") or ""
            seen = _SEEN_VERSION.search(location)
            return STOP_PATH in location, int(seen.group(1)) if seen else None
        refused = resp.status in (451, 403) and resp.getheader("Link", "").find("blocked-by") >= 0
        return refused, None
    except (OSError, http.client.HTTPException):
        return False, None
    finally:
        conn.close()
