"""Free loopback ports for the servers a test starts.

One implementation, shared with ``edgeagent lab``: :mod:`edgeagent.lab.daemons`. There is
an unavoidable race between picking a port and the server binding it.
"""

from __future__ import annotations

from edgeagent.lab.daemons import HOST, free_tcp_port
from edgeagent.lab.daemons import free_port as free_dns_port

__all__ = ["free_port", "free_tcp_port"]


def free_port(host: str = HOST, *, udp: bool = True) -> int:
    """A port on ``host`` that nothing listens on now: for TCP and, by default, also for
    UDP (DNS daemons bind both)."""
    return free_dns_port(host) if udp else free_tcp_port(host)
