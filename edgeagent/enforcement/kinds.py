"""The enforcers, in the order the daemon starts, publishes to and reports them."""

from __future__ import annotations

from edgeagent.diversion.enforcer import DiversionEnforcer
from edgeagent.enforcement.base import Enforcer
from edgeagent.plugins import Registry
from edgeagent.proxy.enforcer import ProxyEnforcer
from edgeagent.rpz.enforcer import RpzEnforcer

# Every command imports these modules through the config (command start-up): they import
# aiohttp, dnspython, cryptography only where they run (see edgeagent.plugins).
# Every enforcer is always present, each configured by the sections it owns.
ENFORCERS: Registry[Enforcer] = Registry("enforcer", key=None)
ENFORCERS.register(RpzEnforcer)
ENFORCERS.register(ProxyEnforcer)
ENFORCERS.register(DiversionEnforcer)
