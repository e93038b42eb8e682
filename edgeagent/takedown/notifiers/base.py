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
  a notice went through with it;
* on ``await send(notice)`` make exactly one delivery attempt of one :class:`Notice`, and
  raise :class:`NotifyError` on failure with a reason that holds no URL and no secret.
  Retries, back-off and recording are the service's job, so every attempt is visible on
  the ticket.

A notifier MUST NOT send content or attachments: a notice is metadata only (case
reference, URLs, addresses and where they sit on the agent host's segments, customer and
service ids, deadline, the instruction to isolate and preserve). When ``notice.hold`` is
set (law-enforcement hold) it must reach the ISP's hosting team only:
``customer_contact`` is then empty and must not be used.
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


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notifier sends for one ticket (metadata only, see the module docstring).

    ``kind`` is ``"notice"``, ``"reminder"``, ``"escalation"`` or ``"renotify"``.
    ``addresses`` pairs each URL with the addresses it resolved to, in URL order;
    ``segments`` says where those addresses sit (interface, next hop, MAC), if known.
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


class NotifyError(EdgeAgentError):
    """A notice could not be delivered; ``reason`` holds no URL and no secret."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"{channel}: {reason}")


class NotifierConfig(PluginConfig):
    """Base of every notifier's config model (``[takedown.notifiers.NAME]``)."""


class Notifier(ABC):
    """Delivers notices to the hosting team (see the module docstring)."""

    KIND: ClassVar[str]
    Config: ClassVar[type[NotifierConfig]]
    name: str  # the NAME of [takedown.notifiers.NAME]: the channel recorded on tickets

    @classmethod
    @abstractmethod
    def from_config(cls, config: NotifierConfig, *, name: str) -> Notifier:
        """The notifier that ``config`` describes, named ``name``."""

    @abstractmethod
    async def send(self, notice: Notice) -> None:
        """One delivery attempt; :class:`NotifyError` on failure."""
