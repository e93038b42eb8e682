"""Proxy canary: prove that a proxy refuses the always-listed canary URL right now.

The canary URL is an entry every index carries (a ``url`` decision on a reserved name).
:func:`proxy_canary` asks the proxy for it as an explicit-proxy request and succeeds when
the answer is the stop page: either Squid's ``deny_info`` redirect to ``/blocked`` or a
451/403 response. It is blocking (``http.client``); the daemon calls it through
``asyncio.to_thread`` after each index change and every minute, and sets
``edgeagent_proxy_canary_ok{proxy=...}``.
"""

from __future__ import annotations

import http.client

STOP_PATH = "/blocked"


def proxy_canary(proxy_host: str, proxy_port: int, canary_url: str, timeout: float = 5.0) -> bool:
    """True if the proxy at ``proxy_host:proxy_port`` answers ``canary_url`` with the stop page.

    Any network error, timeout or other answer (the origin's content, a 5xx) is False.
    """
    conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
    try:
        conn.request("GET", canary_url, headers={"Cache-Control": "no-cache"})
        resp = conn.getresponse()
        resp.read(65536)
        if resp.status in (301, 302, 303, 307, 308):
            return STOP_PATH in (resp.getheader("Location") or "")
        return resp.status in (451, 403) and resp.getheader("Link", "").find("blocked-by") >= 0
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
