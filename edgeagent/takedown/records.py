"""What a ticket must have on record before some of its steps: frozen values with JSON.

* :class:`Authorisation`: a law-enforcement authorisation to isolate the content — who
  gave it, their reference, when — and who recorded it when. Where the rules require one
  (by notice source or jurisdiction), the hosting team is told to preserve and wait
  until it is recorded, and the content may not be isolated before.
* :class:`Referral`: the case went to a hotline or agency (one configured in
  ``[takedown] referral_recipients``), under their reference, at a time. Needed for
  ``referred``.
* :class:`Preservation`: where the hosting team preserved the content, who did it, and
  the SHA-256 of each preserved file as the hosting team computed it (the agent never
  fetches content, so never computes it). Needed for ``removed-and-preserved``.
* :class:`Outcome`: a measure on the customer's account (suspended, closed, reinstated).

Every record names the person who entered it (``recorded_by``, a token identity) and
when (``recorded_at``); the service stamps both when it records the value (the caller
leaves them empty). The time the thing happened (``at``) is what that person says.
"""

from __future__ import annotations

import types
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Self, Union, get_args, get_origin, get_type_hints


class _Record:
    """JSON for a record dataclass: times as ISO text, tuples as arrays, enums as values;
    a key missing from stored JSON takes the field's default."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {f.name: _to_json(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Self:
        hints = get_type_hints(cls)
        values = {
            f.name: _from_json(hints[f.name], d[f.name])
            for f in fields(cls)  # type: ignore[arg-type]
            if f.name in d or f.default is MISSING
        }
        return cls(**values)


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value.value if isinstance(value, StrEnum) else value


def _from_json(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if get_origin(hint) in (Union, types.UnionType):  # "X | None": the X
        hint = next(a for a in get_args(hint) if a is not type(None))
    if get_origin(hint) is tuple:
        return tuple(str(v) for v in value)
    if hint is datetime:
        return datetime.fromisoformat(str(value))
    return hint(value)


@dataclass(frozen=True, slots=True)
class Authorisation(_Record):
    """A law-enforcement authorisation to isolate the content (see the module doc)."""

    by: str  # the officer or agency who authorised
    reference: str  # their reference (a police reference: hosting team and NTD team only)
    at: datetime
    recorded_by: str = ""
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Referral(_Record):
    """The case referred to a hotline or agency (see the module docstring)."""

    recipient: str  # a key of [takedown] referral_recipients
    reference: str  # the recipient's reference
    at: datetime
    recorded_by: str = ""
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Preservation(_Record):
    """Where and by whom the content was preserved, with the hosting team's hashes."""

    location: str
    preserved_by: str
    content_sha256: tuple[str, ...]  # lower-case hex, one per preserved file
    at: datetime
    recorded_by: str = ""
    recorded_at: datetime | None = None


class OutcomeKind(StrEnum):
    ACCOUNT_SUSPENDED = "account-suspended"
    ACCOUNT_CLOSED = "account-closed"
    ACCOUNT_REINSTATED = "account-reinstated"


@dataclass(frozen=True, slots=True)
class Outcome(_Record):
    """A measure taken on the customer's account because of the case."""

    kind: OutcomeKind
    reason: str
    at: datetime
    recorded_by: str = ""
    recorded_at: datetime | None = None
