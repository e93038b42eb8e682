"""The RPZ publisher kinds (``kind`` of ``[publishers.NAME]``); one line per kind."""

from __future__ import annotations

from typing import Any

from edgeagent.plugins import Registry
from edgeagent.rpz.publishers.base import Publisher
from edgeagent.rpz.publishers.bind_update import BindUpdatePublisher
from edgeagent.rpz.publishers.http_notify import HttpNotifyPublisher
from edgeagent.rpz.publishers.zonefile import ZonefilePublisher

# Every command imports these modules through the config (command start-up): they import
# aiohttp, dnspython, cryptography only where they run (see edgeagent.plugins).
PUBLISHER_KINDS: Registry[Publisher[Any]] = Registry("publisher")
PUBLISHER_KINDS.register(BindUpdatePublisher)
PUBLISHER_KINDS.register(HttpNotifyPublisher)
PUBLISHER_KINDS.register(ZonefilePublisher)
