"""The feed kinds a ``[feeds.NAME]`` table may name (``kind``); the contract is in
:mod:`edgeagent.feeds.base`. Adding a kind: one module, one ``register`` line here."""

from __future__ import annotations

from typing import Any

from edgeagent.feeds.base import Feed
from edgeagent.feeds.domainlist import DomainListFeed
from edgeagent.feeds.hashedlist import HashedUrlListFeed
from edgeagent.feeds.localfile import LocalFileFeed
from edgeagent.feeds.rpz_axfr import RpzAxfrFeed
from edgeagent.feeds.urllist import UrlListFeed
from edgeagent.plugins import Registry

__all__ = ["FEED_KINDS"]

# Every command imports these modules through the config (command start-up): they import
# aiohttp, dnspython, cryptography only where they run (see edgeagent.plugins).
FEED_KINDS: Registry[Feed[Any]] = Registry("feed")
FEED_KINDS.register(UrlListFeed)
FEED_KINDS.register(HashedUrlListFeed, aliases=("hashed-list",))
FEED_KINDS.register(DomainListFeed)
FEED_KINDS.register(LocalFileFeed)
FEED_KINDS.register(RpzAxfrFeed, aliases=("rpz",))
