"""The customer source kinds (``[[takedown.customers]] kind = ...``); one line per kind."""

from __future__ import annotations

from edgeagent.plugins import Registry
from edgeagent.takedown.customers.base import CustomerSource
from edgeagent.takedown.customers.csv import CsvExport
from edgeagent.takedown.customers.http import HttpIpam
from edgeagent.takedown.customers.json import JsonExport
from edgeagent.takedown.customers.ripe import RipeExport

# Every command imports these modules through the config (command start-up): they import
# aiohttp, dnspython, cryptography only where they run (see edgeagent.plugins).
CUSTOMER_SOURCE_KINDS: Registry[CustomerSource] = Registry("customer source")
CUSTOMER_SOURCE_KINDS.register(CsvExport)
CUSTOMER_SOURCE_KINDS.register(JsonExport)
CUSTOMER_SOURCE_KINDS.register(RipeExport)
CUSTOMER_SOURCE_KINDS.register(HttpIpam)
