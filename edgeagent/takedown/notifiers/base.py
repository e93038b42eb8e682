"""The notifier contract: deliver one takedown notice to the hosting team.

A notifier is configured as ``[takedown.notifiers.NAME]`` with ``kind = "..."`` (several
of a kind are fine: the hosting team's mailbox, an on-call address, a ticket system's
webhook); the kind selects a :class:`Notifier` subclass from
:data:`edgeagent.takedown.notifiers.kinds.NOTIFIER_KINDS`.

A notifier MUST:

* define ``KIND``, ``Config`` (a :class:`NotifierConfig` whose ``kind`` is
  ``Literal[KIND]`` and which checks everything that concerns this notifier alone) and
  ``from_config(config, name=...)``, which reads any secret it needs (so a missing secret
  fails at start, not at the first notice) and does no I/O besides;
* carry ``name``, the ``NAME`` of its table: tickets and audit records name the channel
  a notice went through with it, and ``hosting_team`` from its config (``hosting_team``
  in every notifier's table, default true: every recipient of the channel belongs to the
  ISP's hosting team);
* on ``await send(notice)`` make exactly one delivery attempt of one :class:`Notice`, and
  raise :class:`NotifyError` on failure with a reason that holds no URL and no secret.
  Retries, back-off and recording are the service's job, so every attempt is visible on
  the ticket.

A notifier MUST NOT send content or attachments: a notice is metadata only (case
reference, URLs, addresses and where they sit on the agent host's segments, customer and
service ids, deadline, the instruction). When ``customer_contact`` is empty (always on
law-enforcement hold, and for an on-call notifier) nothing may reach the customer and
nothing may say the notice is for the customer. A held case's reference (the
police reference) is named to the hosting team only: a channel with ``hosting_team =
false`` gets held notices with ``reference`` empty, and must not name it any other way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from edgeagent.errors import EdgeAgentError
from edgeagent.plugins import PluginConfig
from edgeagent.takedown.segment import SegmentDetail

INSTRUCTION = (
    "Isolate the listed content from public access and preserve it together with the "
    "customer data: do NOT delete it, do not open or forward it. Evidence may be "
    "requested by law enforcement. Confirm removal to the NTD team."
)
# The first notice where a law-enforcement authorisation must come before isolation: in
# some jurisdictions removing the material without one is itself unlawful.
PRESERVE_INSTRUCTION = (
    "PRESERVE, DO NOT ALTER, AWAIT INSTRUCTION. Keep the listed content and the customer "
    "data exactly as they are: do not alter, move, delete, open or forward anything, and "
    "do not isolate it yet. A law-enforcement authorisation is required first; the NTD "
    "team will send the instruction to isolate once it is recorded."
)
FOUND_LEGAL_INSTRUCTION = (
    "The NTD team found the listed content legal: the block on it is lifted and it may "
    "be restored to public access. Keep any preserved copy until the NTD team says "
    "otherwise."
)
WITHHELD = "(withheld: law-enforcement hold)"


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notifier sends for one ticket (metadata only, see the module docstring).

    ``kind`` is ``"notice"``, ``"reminder"``, ``"escalation"``, ``"renotify"`` or
    ``"isolate"`` (the instruction to isolate, once an authorisation is recorded) or
    ``"found-legal"`` (the content may be restored).
    ``instruction`` is what the hosting team must do now: :data:`INSTRUCTION`, or
    :data:`PRESERVE_INSTRUCTION` while an authorisation is awaited.
    ``reference`` is empty when withheld from this channel (see the module docstring).
    ``addresses`` pairs each URL with the addresses it resolved to, in URL order;
    ``segments`` says where those addresses sit (interface, next hop, MAC), if known.
    ``idempotency_key`` names this notice on this channel; the same key means the same
    notice (a receiver may drop a repeat; the agent records it before sending).
    """

    ticket_id: int
    kind: str
    reference: str
    source: str
    customer_id: str
    service_id: str
    customer_contact: str
    urls: tuple[str, ...]
    addresses: tuple[tuple[str, ...], ...]
    notice_received_at: datetime
    deadline: datetime
    hold: bool
    instruction: str
    segments: tuple[SegmentDetail, ...] = ()
    idempotency_key: str = ""


class NotifyError(EdgeAgentError):
    """A notice could not be delivered; ``reason`` holds no URL and no secret."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"{channel}: {reason}")


class NotifierConfig(PluginConfig):
    """Base of every notifier's config model (``[takedown.notifiers.NAME]``).

    ``hosting_team = false`` marks a channel that reaches anyone outside the ISP's hosting
    team (a shared ticket system, an on-call service): held cases' references are
    withheld from it.
    """

    hosting_team: bool = True


class Notifier(ABC):
    """Delivers notices to the hosting team (see the module docstring)."""

    KIND: ClassVar[str]
    Config: ClassVar[type[NotifierConfig]]
    name: str  # the NAME of [takedown.notifiers.NAME]: the channel recorded on tickets
    hosting_team: bool  # every recipient is in the ISP's hosting team

    @classmethod
    @abstractmethod
    def from_config(cls, config: NotifierConfig, *, name: str) -> Notifier:
        """The notifier that ``config`` describes, named ``name``."""

    @abstractmethod
    async def send(self, notice: Notice) -> None:
        """One delivery attempt; :class:`NotifyError` on failure."""
