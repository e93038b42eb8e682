"""The row layouts every SQL backend shares: column lists, and values built from rows.

The SQLite and PostgreSQL schemas have the same tables and columns; they differ in how a
timestamp is stored (SQLite: integer microseconds; PostgreSQL: ``timestamptz``). Each
builder takes the backend's ``when`` function, which turns a stored timestamp into an
aware UTC ``datetime``. Pure functions only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from enum import Enum
from types import MappingProxyType
from typing import Any

from edgeagent.deadline_clock import ClockMark
from edgeagent.errors import StoreError
from edgeagent.intake.base import IntakeChannel, IntakeContent, IntakeItem, IntakeState
from edgeagent.model import (
    Action,
    Decision,
    DecisionEvent,
    DecisionStatus,
    Indicator,
    NoticeSource,
    Scope,
)
from edgeagent.store.base import Generation, GenerationStatus, TargetSearch, Token

SAVE_RPZ_SERIAL = (
    "INSERT INTO rpz_serial (id, serial) VALUES (1, %s) ON CONFLICT (id) DO UPDATE "
    "SET serial = excluded.serial WHERE "
    # RFC 1982: only a serial newer than the recorded one replaces it (across the wrap).
    "(excluded.serial > rpz_serial.serial "
    "AND excluded.serial - rpz_serial.serial < 2147483648) "
    "OR (excluded.serial < rpz_serial.serial "
    "AND rpz_serial.serial - excluded.serial > 2147483648)"
)
"""Record a serial unless the recorded one is as new (a deposed leader never lowers it)."""

SAVE_CLOCK_MARK = (
    "INSERT INTO clock_marks (host, at, boot, monotonic) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (host) DO UPDATE SET at = excluded.at, boot = excluded.boot, "
    "monotonic = excluded.monotonic WHERE excluded.at > clock_marks.at"
)
"""Record a host's clock mark unless the recorded one is as late (it never goes back)."""

CLOCK_MARK = "SELECT host, at, boot, monotonic FROM clock_marks WHERE host = %s"


When = Callable[[Any], datetime]
"""A stored timestamp -> an aware UTC datetime."""

LOADING = "_loading"
"""Internal status of a generation whose entries are still being written: no reader sees it."""

GENERATION_COLUMNS = "id, feed, status, created_at, entry_count, serial, hold_reason, meta"
DECISION_COLUMNS = (
    "id, scope, value, action, actor, reason, reference, notice_source, notice_received_at, "
    "created_at, status, expires_at, category, approved_by, hold, jurisdiction"
)
EVENT_COLUMNS = "decision_id, at, actor, status, reason"
TOKEN_COLUMNS = "id, name, role, created_at, revoked"  # noqa: S105 - column names
INTAKE_COLUMNS = (
    "id, reference, channel, state, created_at, decided_at, decided_by, reason, decision_ids, body"
)
ENTRY_COLUMNS = "scope, value, action, category, reference, first_seen, last_seen, expires_at"

SLOT_SUCCESSOR = {
    GenerationStatus.LIVE: GenerationStatus.SUPERSEDED,
    GenerationStatus.HELD: GenerationStatus.DISCARDED,
}
"""What a feed's live (held) generation becomes when another takes its slot."""


def new_generation_status(status: GenerationStatus) -> GenerationStatus:
    """``status`` if a new generation may have it (live or held), else ``StoreError``."""
    status = GenerationStatus(status)
    if status not in SLOT_SUCCESSOR:
        raise StoreError(f"a new generation must be live or held, not {status.value}")
    return status


def generation(row: Sequence[Any], when: When) -> Generation:
    """A :class:`Generation` from a :data:`GENERATION_COLUMNS` row."""
    return Generation(
        id=int(row[0]),
        feed=str(row[1]),
        status=GenerationStatus(row[2]),
        created_at=when(row[3]),
        entry_count=int(row[4]),
        serial=str(row[5]),
        hold_reason=str(row[6]),
        meta=MappingProxyType(json.loads(row[7])),
    )


def event(row: Sequence[Any], when: When) -> tuple[int, DecisionEvent]:
    """``(decision id, event)`` from an :data:`EVENT_COLUMNS` row."""
    return int(row[0]), DecisionEvent(when(row[1]), row[2], DecisionStatus(row[3]), row[4])


def decision(row: Sequence[Any], history: Sequence[DecisionEvent], when: When) -> Decision:
    """A :class:`Decision` from a :data:`DECISION_COLUMNS` row and its events, oldest first."""
    return Decision(
        id=int(row[0]),
        indicator=Indicator(Scope(row[1]), row[2]),
        action=Action(row[3]),
        actor=row[4],
        reason=row[5],
        reference=row[6],
        notice_source=NoticeSource(row[7]),
        notice_received_at=when(row[8]),
        created_at=when(row[9]),
        status=DecisionStatus(row[10]),
        expires_at=None if row[11] is None else when(row[11]),
        category=row[12],
        approved_by=row[13],
        history=tuple(history),
        hold=bool(row[14]),
        jurisdiction=row[15],
    )


def decision_filters(
    status: DecisionStatus | None,
    source: NoticeSource | None,
    scope: str | None,
    reference: str | None,
) -> list[tuple[str, str]]:
    """``(column, value)`` for every filter of ``Store.list_decisions`` that is given."""
    given = (
        ("status", status),
        ("notice_source", source),
        ("scope", scope),
        ("reference", reference),
    )
    return [
        (column, str(value.value if isinstance(value, Enum) else value))
        for column, value in given
        if value is not None
    ]


def target_condition(target: TargetSearch, mark: str) -> tuple[str, list[str]]:
    """SQL condition (placeholder ``mark``) and its parameters for a search by target.

    A URL on the host is a value starting ``scheme://host/`` or ``scheme://host:`` (a
    canonical URL has nothing else there); compared as a prefix with ``substr``, not
    ``LIKE`` (a host name may hold ``_``) and not by range (collation dependent).
    """
    terms = [f"value = {mark}" for _ in target.values]
    params = list(target.values)
    if target.host is not None:
        for scheme in ("http", "https"):
            for end in "/:":
                prefix = f"{scheme}://{target.host}{end}"
                terms.append(f"substr(value, 1, {len(prefix)}) = {mark}")
                params.append(prefix)
    return f"({' OR '.join(terms) or 'false'})", params


def token(row: Sequence[Any], when: When) -> Token:
    """A :class:`Token` from a :data:`TOKEN_COLUMNS` row."""
    return Token(
        id=int(row[0]), name=row[1], role=row[2], created_at=when(row[3]), revoked=bool(row[4])
    )


def clock_mark(row: Sequence[Any], when: When) -> ClockMark:
    """A :class:`ClockMark` from a :data:`CLOCK_MARK` row."""
    return ClockMark(str(row[0]), when(row[1]), str(row[2]), float(row[3]))


def intake_item(row: Sequence[Any], when: When) -> IntakeItem:
    """An :class:`IntakeItem` from an :data:`INTAKE_COLUMNS` row."""
    return IntakeItem(
        id=int(row[0]),
        reference=str(row[1]),
        channel=IntakeChannel(row[2]),
        state=IntakeState(row[3]),
        created_at=when(row[4]),
        decided_at=None if row[5] is None else when(row[5]),
        decided_by=str(row[6]),
        reason=str(row[7]),
        decision_ids=tuple(int(i) for i in json.loads(row[8])),
        content=IntakeContent.from_json(str(row[9])),
    )


def intake_filters(
    state: IntakeState | None, channel: IntakeChannel | None
) -> list[tuple[str, str]]:
    """``(column, value)`` for every filter of ``Store.list_intake_items`` that is given."""
    given = (("state", state), ("channel", channel))
    return [(column, value.value) for column, value in given if value is not None]


def decision_ids_json(ids: Iterable[int]) -> str:
    """The ``decision_ids`` column: the ids as a sorted JSON list."""
    return json.dumps(sorted(int(i) for i in ids))


def intake_subject(item_id: int) -> str:
    return f"intake:{item_id}"
