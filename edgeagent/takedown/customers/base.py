"""The customer source contract: where address assignments come from.

A customer source is configured as ``[[takedown.customers]]`` with ``kind = "..."``; the
kind selects a :class:`CustomerSource` subclass from
:data:`edgeagent.takedown.customers.kinds.CUSTOMER_SOURCE_KINDS`.

A source MUST:

* define ``KIND``, ``Config`` (a :class:`CustomerSourceConfig` whose ``kind`` is
  ``Literal[KIND]`` and which checks everything that concerns this source alone) and
  ``from_config(config, name=...)``, which reads any secret it needs (so a missing secret
  fails at start, never at the first refresh) and does no I/O besides;
* have a ``name`` that identifies it in reports and audit records: the ``name`` given to
  ``from_config``, never a secret or a URL;
* on ``await load()`` return every assignment it knows, as :class:`Assignment` values, or
  raise :class:`ExportError` listing *every* problem with its line number (item number for
  JSON arrays). It never returns a partial list: the caller
  (:class:`edgeagent.takedown.customers.directory.CustomerDirectory`) then keeps that
  source's previous data.

A source MUST NOT put a value from the export into an error reason (a reason names the
line and the column), and must not block the event loop (file reads go to a thread).

Assignments are time-ranged: ``valid_from``/``valid_to`` (UTC, ``None`` = open) decide
which customer held an address at the time of a notice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from edgeagent.errors import EdgeAgentError
from edgeagent.plugins import PluginConfig


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


class CustomerSourceConfig(PluginConfig):
    """Base of every customer source's config model (``[[takedown.customers]]``)."""


class CustomerSource(ABC):
    """Where customer assignments come from (see the module docstring)."""

    KIND: ClassVar[str]
    Config: ClassVar[type[CustomerSourceConfig]]
    name: str  # how reports and audit records name this source

    @classmethod
    @abstractmethod
    def from_config(cls, config: CustomerSourceConfig, *, name: str) -> CustomerSource:
        """The source that ``config`` describes, reported as ``name``."""

    @abstractmethod
    async def load(self) -> list[Assignment]:
        """Every assignment the source knows, or :class:`ExportError`."""
