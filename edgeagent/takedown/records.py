"""What a ticket must have on record before some of its steps: frozen values with JSON.

* :class:`Authorisation`: a law-enforcement authorisation to isolate the content — who
  gave it, their reference, when — and who recorded it when. Where the rules require one
  (by notice source or jurisdiction), the hosting team is told to preserve and wait
  until it is recorded, and the content may not be isolated before.

Every record names the person who entered it (``recorded_by``, a token identity) and
when (``recorded_at``); the service stamps both when it records the value (the caller
leaves them empty). The time the thing happened (``at``) is what that person says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Authorisation:
    """A law-enforcement authorisation to isolate the content (see the module doc)."""

    by: str  # the officer or agency who authorised
    reference: str  # their reference (a police reference: hosting team and NTD team only)
    at: datetime
    recorded_by: str = ""
    recorded_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "reference": self.reference,
            "at": self.at.isoformat(),
            **_recorded_json(self.recorded_by, self.recorded_at),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Authorisation:
        return cls(str(d["by"]), str(d["reference"]), _time(d["at"]), *_recorded(d))


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _recorded_json(by: str, at: datetime | None) -> dict[str, Any]:
    return {"recorded_by": by, "recorded_at": None if at is None else at.isoformat()}


def _recorded(d: dict[str, Any]) -> tuple[str, datetime | None]:
    at = d.get("recorded_at")
    return str(d.get("recorded_by", "")), None if at is None else _time(at)
