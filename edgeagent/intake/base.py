"""The intake contract: how reports, quarantined notices and appeals reach people.

Every way in (the public report page, e-mailed notices a machine could not trust, appeals
from the stop page, challenges of a takedown by a hosting customer) ends as one
:class:`IntakeItem` in one triage queue, kept by the store (``Store.add_intake_item`` and
the methods beside it). Nothing that enters here acts by itself:

- an item is created ``pending``; only a person moves it, once, to its outcome:
  reports and quarantined notices are ``accepted`` (their URLs become decisions through
  :class:`edgeagent.decisions.DecisionService`, so the guardrails and four-eyes rules
  apply, and a public report's decisions start pending approval) or ``rejected``
  (kept, with the reason, for the retention period); appeals and challenges are
  ``upheld`` (the block stays) or ``revoked`` (the blocking decisions are revoked, or a
  listed entry is overridden by an allow decision);
- every move is audited (subject ``intake:<id>``; URLs never appear in the audit detail,
  only counts and short hashes) in the same transaction as the move;
- an item holds only what the person chose to give: the fields of :class:`IntakeContent`.
  No client address, user agent, cookie or browser detail is ever stored, logged or
  counted under a label; the contact field is empty unless the person filled it in;
- the public ``reference`` is random (it says nothing about the content or the sender)
  and is what the person is shown and may quote;
- an appeal names the blocking entry by an opaque reference (a keyed hash of the entry,
  :mod:`edgeagent.intake.entryref`), never by its URL.

Outcome texts shown to appellants never quote the list entry either.

Channels: the public pages (:mod:`.app`) queue reports, appeals and challenges; the
mailbox (:mod:`.mail`) turns a notice from an allow-listed, DKIM-signed sender into
decisions directly (the sender is the authority, as for ``POST /v1/decisions/bulk``) and
queues every other message as ``mail-quarantine``, never acting on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from edgeagent.errors import InvalidTransition, StoreError


class IntakeChannel(StrEnum):
    """How an item came in."""

    PUBLIC_REPORT = "public-report"
    MAIL_QUARANTINE = "mail-quarantine"
    APPEAL = "appeal"
    CHALLENGE = "challenge"


class IntakeState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UPHELD = "upheld"
    REVOKED = "revoked"


OUTCOMES: Mapping[IntakeChannel, tuple[IntakeState, ...]] = {
    IntakeChannel.PUBLIC_REPORT: (IntakeState.ACCEPTED, IntakeState.REJECTED),
    IntakeChannel.MAIL_QUARANTINE: (IntakeState.ACCEPTED, IntakeState.REJECTED),
    IntakeChannel.APPEAL: (IntakeState.UPHELD, IntakeState.REVOKED),
    IntakeChannel.CHALLENGE: (IntakeState.UPHELD, IntakeState.REVOKED),
}
"""Channel -> the states a person may move its pending items to."""

APPEAL_CHANNELS = (IntakeChannel.APPEAL, IntakeChannel.CHALLENGE)


def check_outcome(channel: IntakeChannel, current: IntakeState, new: IntakeState) -> None:
    """``InvalidTransition`` unless a pending item of ``channel`` may move to ``new``."""
    allowed = OUTCOMES[channel] if current is IntakeState.PENDING else ()
    if new not in allowed:
        raise InvalidTransition(current.value, new.value, [s.value for s in allowed])


@dataclass(frozen=True, slots=True)
class IntakeContent:
    """What the person gave, as given (validated, never rewritten). Empty = not given.

    - ``urls``: the reported addresses (reports, notices);
    - ``category``, ``came_across``, ``live_video``, ``discovered_at``: the report's facts
      (``discovered_at`` as typed, ``YYYY-MM-DDTHH:MM`` local time of the reporter);
    - ``description``, ``statement``: free text of a report, an appeal or a challenge;
    - ``contact``: how to reach the person (only when they chose to give it);
    - ``subject``: what an appeal is about: the opaque entry reference, or for a
      challenge the takedown ticket's case reference;
    - ``notice_source``: for a quarantined notice, the source it claims (a person checks);
    - ``quarantine_reason``: why a machine did not act on an e-mailed notice;
    - ``attachments``: attachments of a notice discarded unopened (``type, size`` each).
    """

    urls: tuple[str, ...] = ()
    category: str = ""
    came_across: str = ""
    live_video: bool | None = None
    discovered_at: str = ""
    description: str = ""
    statement: str = ""
    contact: str = ""
    subject: str = ""
    notice_source: str = ""
    quarantine_reason: str = ""
    attachments: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> IntakeContent:
        try:
            data: dict[str, Any] = json.loads(text)
            data["urls"] = tuple(data.get("urls", ()))
            data["attachments"] = tuple(data.get("attachments", ()))
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"intake item body is not valid: {type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class NewIntakeItem:
    """An item about to be queued; the store assigns id, state and created_at."""

    reference: str
    channel: IntakeChannel
    content: IntakeContent


@dataclass(frozen=True, slots=True)
class IntakeItem:
    id: int
    reference: str
    channel: IntakeChannel
    state: IntakeState
    content: IntakeContent
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str = ""
    reason: str = ""
    decision_ids: tuple[int, ...] = field(default_factory=tuple)


Submit = Callable[[IntakeChannel, IntakeContent], IntakeItem]
"""Queues what came in on a channel (:meth:`edgeagent.intake.triage.Triage.submit`)."""
