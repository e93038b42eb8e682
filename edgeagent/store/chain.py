"""The audit hash chain, computed the same way by every store backend.

Each audit row is ``(id, at, actor, action, subject, detail, prev_hash, row_hash)``: ids run
1, 2, 3, ... without gaps, ``at`` is fixed-width ISO-8601 UTC text and ``detail`` canonical
JSON text (their exact bytes are hashed), ``prev_hash`` is the previous row's ``row_hash``
(:data:`ZERO_HASH` for row 1) and ``row_hash`` is :func:`audit_row_hash` over the rest.
A backend stores these columns as they are, keeps a head row ``(last_id, last_hash)``
written with every append, and verifies with :func:`verify_chain`. Pure functions only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType
from typing import Any

from edgeagent.errors import StoreError
from edgeagent.store.base import AuditRecord, AuditVerification, require_aware

ZERO_HASH = "0" * 64
"""``prev_hash`` of the first audit row."""

AUDIT_COLUMNS = "id, at, actor, action, subject, detail, prev_hash, row_hash"
"""The audit table's columns in the order every function here takes them."""

AuditFields = tuple[int, str, str, str, str, str, str]
"""``(id, at, actor, action, subject, detail, prev_hash)``: the audit columns, in table order,
that ``row_hash`` covers."""

AuditRow = tuple[int, str, str, str, str, str, str, str]
"""One stored audit row: :data:`AuditFields` plus ``row_hash``."""


def utc_text(dt: datetime) -> str:
    """Fixed-width ISO-8601 UTC text: sorts lexically in time order."""
    return require_aware(dt).astimezone(UTC).isoformat(timespec="microseconds")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot store a {type(value).__name__} in JSON")


def canonical_json(value: Mapping[str, Any]) -> str:
    """Canonical JSON: sorted keys, compact separators, ASCII only, no NaN.

    Datetimes become ISO-8601 UTC text, enums their value, bytes hex, sets sorted lists,
    other mappings (e.g. a record's read-only ``detail``) plain objects.
    """
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
            default=_json_default,
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"detail is not JSON-serialisable: {exc}") from None


def audit_row_hash(fields: AuditFields) -> str:
    """SHA-256 (hex) of one audit row.

    The hashed bytes are the compact, ASCII-only JSON array
    ``[id, at, actor, action, subject, detail, prev_hash]`` where ``detail`` is the stored
    canonical JSON *text* (a string inside the array) and ``at`` the stored ISO text. An
    independent verifier can recompute it from the raw table with a few lines of code.
    """
    payload = json.dumps(
        list(fields),
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def next_row(
    last_id: int,
    last_hash: str,
    at: datetime,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any] | None,
) -> AuditRow:
    """The row that follows ``(last_id, last_hash)`` (``(0, "")`` for an empty log)."""
    fields: AuditFields = (
        last_id + 1,
        utc_text(at),
        actor,
        action,
        subject,
        canonical_json(detail or {}),
        last_hash if last_id else ZERO_HASH,
    )
    return (*fields, audit_row_hash(fields))


def audit_record(row: Sequence[Any]) -> AuditRecord:
    """An :class:`AuditRecord` from a stored row (:data:`AUDIT_COLUMNS` order)."""
    return AuditRecord(
        id=int(row[0]),
        at=datetime.fromisoformat(row[1]),
        actor=row[2],
        action=row[3],
        subject=row[4],
        detail=MappingProxyType(json.loads(row[5])),
        prev_hash=row[6],
        row_hash=row[7],
    )


def verify_chain(rows: Iterable[Sequence[Any]], head: Sequence[Any] | None) -> AuditVerification:
    """Recompute the chain over ``rows`` (ascending id) against ``head``; name the first
    row that fails.

    Detects an edited row (its ``row_hash`` no longer matches), a deleted row (an id
    gap, or the next row's ``prev_hash`` no longer matches), reordered rows (a
    ``prev_hash`` mismatch) and rows cut from the end (fewer rows than the head
    records). ``rows`` in the result is the number of rows read. A tamperer who rewrites
    every later row *and* the head is only caught against a copy of the head kept
    elsewhere (logs, metrics), which is why the head is exposed.
    """
    expected_id, expected_prev, n = 1, ZERO_HASH, 0
    for row_id, at, actor, action, subject, detail, prev_hash, row_hash in rows:
        n += 1
        if row_id != expected_id:
            return AuditVerification(
                False, n, row_id, f"id gap: expected row {expected_id} (rows deleted)"
            )
        if prev_hash != expected_prev:
            return AuditVerification(
                False,
                n,
                row_id,
                "prev_hash does not match the previous row (rows deleted or reordered)",
            )
        recomputed = audit_row_hash((row_id, at, actor, action, subject, detail, prev_hash))
        if recomputed != row_hash:
            return AuditVerification(False, n, row_id, "row_hash mismatch (row edited)")
        expected_id, expected_prev = row_id + 1, row_hash
    if head is None:
        return AuditVerification(False, n, expected_id, "audit head missing")
    last_id = expected_id - 1
    if int(head[0]) != last_id or (last_id and str(head[1]) != expected_prev):
        return AuditVerification(
            False,
            n,
            last_id + 1,
            f"log ends at row {last_id} but the head records row {head[0]} "
            "(rows removed from the end)",
        )
    return AuditVerification(True, n)
