"""The policy zones' defaults, in one place: ``[rpz]`` (:class:`edgeagent.rpz.enforcer.
RpzConfig`) and the compiler's :class:`edgeagent.rpz.compiler.RpzSettings` both take them
from here, and ``edgeagent render`` builds the snippets from ``[rpz]``, so a zone,
canary or SOA timer left at its default is the same name and number everywhere."""

from __future__ import annotations

ZONE = "block.rpz.invalid"
EXCEPTION_ZONE = "allow.rpz.invalid"
CANARY = "canary.edgeagent.example"
TTL = 60
SOA_MNAME = "localhost"
SOA_RNAME = "hostmaster.edgeagent.invalid"
SOA_REFRESH = 300
SOA_RETRY = 60
# Fail static: a secondary keeps enforcing the last zone for this long with the centre
# unreachable. 24 weeks, the most BIND accepts, far beyond any outage; the staleness
# alert fires long before.
SOA_EXPIRE = 14_515_200
SOA_MINIMUM = 60
