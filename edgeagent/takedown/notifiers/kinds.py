"""The notifier kinds (``[takedown.notifiers.NAME] kind = ...``); one line per kind."""

from __future__ import annotations

from edgeagent.plugins import Registry
from edgeagent.takedown.notifiers.base import Notifier
from edgeagent.takedown.notifiers.smtp import SmtpNotifier
from edgeagent.takedown.notifiers.webhook import WebhookNotifier

# Every command imports these modules through the config (command start-up): they import
# aiohttp, dnspython, cryptography only where they run (see edgeagent.plugins).
NOTIFIER_KINDS: Registry[Notifier] = Registry("notifier")
NOTIFIER_KINDS.register(SmtpNotifier)
NOTIFIER_KINDS.register(WebhookNotifier)
