"""Contracts of the takedown package: customer lookups, notifiers, and their values.

Customer lookup (:class:`CustomerLookup`):

* ``name`` identifies the source in reports and audit records (never a secret or URL).
* ``await load()`` returns every assignment the source knows, as :class:`Assignment`
  values. A source that cannot be read or parsed raises :class:`ExportError` listing
  *every* problem with its line number (or item number for JSON arrays); it never returns
  a partial list. The caller (:class:`edgeagent.takedown.customers.CustomerRegistry`)
  then keeps that source's previous data.
* Assignments are time-ranged: ``valid_from``/``valid_to`` (UTC, ``None`` = open) decide
  which customer held an address at the time of a notice.

Notifier (:class:`Notifier`):

* ``channel`` is ``"webhook"`` or ``"email"`` (or another short word).
* ``await send(notice)`` delivers one :class:`Notice` or raises :class:`NotifyError`
  with a reason that holds no URL and no secret. It makes a single attempt: retries,
  back-off and recording are the engine's job, so every attempt is visible on the ticket.
* A notice carries metadata only (case reference, URLs, addresses, customer and service
  ids, deadline, the instruction to isolate and preserve). Never content, never an
  attachment. When ``notice.hold`` is set (law-enforcement hold) the notifier must reach
  the ISP's hosting team only: ``customer_contact`` is then empty and must not be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from edgeagent.errors import EdgeAgentError


@dataclass(frozen=True, slots=True)
class Assignment:
    """One block of addresses assigned to one customer's service for a time.

    ``first``/``last`` are the integer bounds of the block (inclusive), ``version`` 4 or 6;
    ``prefix`` is how the source wrote it (a CIDR or ``a - b`` range), for display.
    ``origin`` is ``"<source name>:<line>"``, so a report can point at the line.
    """

    version: int
    first: int
    last: int
    prefix: str
    customer_id: str
    service_id: str
    contact: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    origin: str = ""

    def valid_at(self, at: datetime) -> bool:
        """True when the assignment held at ``at`` (``valid_to`` is exclusive)."""
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_to is None or at < self.valid_to

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class ExportProblem:
    """One bad line in an export: ``line`` (1-based; item number for JSON arrays)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ExportError(EdgeAgentError):
    """A customer export that cannot be used; ``problems`` lists every bad line."""

    def __init__(self, source: str, problems: Sequence[ExportProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:20])
        more = f" (+{len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"customer source {source}: {shown}{more}")


class NotifyError(EdgeAgentError):
    """A notice could not be delivered; ``reason`` holds no URL and no secret."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"{channel}: {reason}")


class CustomerLookup(Protocol):
    """Where customer assignments come from (see the module docstring)."""

    @property
    def name(self) -> str: ...

    async def load(self) -> list[Assignment]: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notifier sends for one ticket (metadata only, see the module docstring).

    ``kind`` is ``"notice"``, ``"reminder"``, ``"escalation"`` or ``"renotify"``.
    ``addresses`` pairs each URL with the addresses it resolved to, in URL order.
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


class Notifier(Protocol):
    """Delivers notices to the hosting team (see the module docstring)."""

    @property
    def channel(self) -> str: ...

    async def send(self, notice: Notice) -> None: ...


INSTRUCTION = (
    "Isolate the listed content from public access and preserve it together with the "
    "customer data: do NOT delete it, do not open or forward it. Evidence may be "
    "requested by law enforcement. Confirm removal to the NTD team."
)
