"""Wiring of the intake to the agent: its triage rules and the public listener.

:func:`triage_for` gives the daemon's API and the CLI the same :class:`Triage` (appeal
reference key from the state directory, appellant mail through ``[intake] notify_via``).
:func:`start_intake_pages` starts the public pages when ``[intake] enabled``; the daemon
stops the returned runner with its other listeners. :func:`mail_channel_for` gives the
daemon the mail channel when ``[intake.mail] enabled`` (its task stops with the others).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from edgeagent.configtypes import read_secret
from edgeagent.connlimits import serve
from edgeagent.intake.app import PublicPages, create_public_pages_app
from edgeagent.intake.appellant import AppellantMail
from edgeagent.intake.entryref import EntryRefs
from edgeagent.intake.mail.ack import MailAcknowledger
from edgeagent.intake.mail.imap import ImapMailbox, tls_context
from edgeagent.intake.mail.ledger import MailLedger
from edgeagent.intake.mail.lmtp import LmtpDelivery, serve_lmtp
from edgeagent.intake.mail.notices import MailIntake, MailPoller
from edgeagent.intake.mail.signature import KeyLookup
from edgeagent.intake.triage import Notify, Triage
from edgeagent.limits import DEFAULT_LIMITS, ConnectionLimits
from edgeagent.model import Entry
from edgeagent.proxy.enforcer import ProxyEnforcerConfig
from edgeagent.takedown.notifiers.smtp import SmtpNotifier, SmtpNotifierConfig

if TYPE_CHECKING:
    from edgeagent.config import Settings
    from edgeagent.service import Agent


def _smtp_notifier(agent: Agent, name: str | None) -> SmtpNotifier | None:
    """The takedown notifier ``name`` if it is of kind smtp (config checks that it is)."""
    config = agent.settings.takedown.notifiers.get(name) if name else None
    if name is None or not isinstance(config, SmtpNotifierConfig):
        return None
    return SmtpNotifier.from_config(config, name=name)


def _appellant_mail(agent: Agent) -> Notify | None:
    notifier = _smtp_notifier(agent, agent.settings.intake.notify_via)
    return None if notifier is None else AppellantMail(notifier, agent.settings.intake.operator)


@dataclass(frozen=True, slots=True)
class MailChannel:
    """The mail channel of ``[intake.mail]``: its IMAP poller (when ``user`` is set)
    and its LMTP listener address (when ``lmtp_host`` is set)."""

    intake: MailIntake
    poller: MailPoller | None
    lmtp: tuple[str, int] | None
    on_change: Callable[[], None] | None = None
    limits: ConnectionLimits = DEFAULT_LIMITS  # of the LMTP listener ([listeners])

    async def run(self) -> None:
        """Poll and listen until cancelled (the daemon's task)."""
        server = None
        if self.lmtp is not None:
            delivery = LmtpDelivery(self.intake, self.on_change)
            server = await serve_lmtp(delivery, *self.lmtp, self.limits)
        try:
            if self.poller is not None:
                await self.poller.run()
            else:
                await asyncio.Event().wait()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()


def mail_channel_for(
    agent: Agent, triage: Triage, on_change: Callable[[], None] | None = None
) -> MailChannel | None:
    """The mail channel when ``[intake.mail] enabled`` (``on_change``: decisions were
    stored), else ``None``."""
    settings = agent.settings.intake.mail
    if not settings.enabled:
        return None
    notifier = _smtp_notifier(agent, settings.ack_via)
    intake = MailIntake(
        settings,
        agent.decisions,
        triage.submit,
        MailLedger.in_state_dir(agent.settings.agent.state_dir),
        KeyLookup(settings.dkim_resolvers, settings.timeout_seconds),
        acknowledge=None
        if notifier is None
        else MailAcknowledger(notifier, agent.settings.intake.operator),
        on_change=on_change,
        metrics=agent.metrics,
    )
    poller = None
    if settings.user:
        password = read_secret(settings.password_file, settings.password_env)
        context = tls_context(settings.ca_file)

        def open_mailbox() -> ImapMailbox:
            return ImapMailbox(
                settings.host,
                settings.port,
                settings.user,
                password,
                folder=settings.folder,
                context=context,
                timeout=settings.timeout_seconds,
            )

        poller = MailPoller(intake, open_mailbox, lambda: agent.leadership.is_leader)
    lmtp = None if settings.lmtp_host is None else (settings.lmtp_host, settings.lmtp_port)
    limits = agent.settings.listeners.limits()
    return MailChannel(intake, poller, lmtp, on_change, limits)


def triage_for(agent: Agent) -> Triage:
    """The triage the daemon and the CLI share (see the module docstring)."""

    def entries() -> tuple[Entry, ...]:
        return agent.policy().state.blocks

    return Triage(
        agent.decisions,
        entries=entries,
        refs=entry_refs(agent.settings),
        notify=_appellant_mail(agent),
        metrics=agent.metrics,
    )


def entry_refs(settings: Settings) -> EntryRefs:
    """The appeal key sits beside the proxy index, with the proxy's group: the Squid
    helper reads it to sign its references. A key kept in the state directory before is
    carried over."""
    proxy = settings.sections(ProxyEnforcerConfig).proxy
    state_dir = settings.agent.state_dir
    return EntryRefs.load(proxy.artefacts_dir(state_dir), proxy.group, former=state_dir)


async def start_intake_pages(agent: Agent, triage: Triage) -> tuple[web.AppRunner, str] | None:
    """Start the public pages if enabled: ``(runner, base URL)``, else ``None``."""
    settings = agent.settings.intake
    if not settings.enabled:
        return None
    triage.export_pending()
    pages = PublicPages(settings, triage.submit, metrics=agent.metrics)
    # Public, so as exposed to slow and silent clients as the stop page: the same limits.
    limits = agent.settings.listeners.limits()
    app = create_public_pages_app(pages)
    runner = await serve(app, limits, address=(settings.host, settings.port))
    port = runner.addresses[0][1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return runner, f"http://{host}:{port}"
