"""Preservation record of a takedown ticket: metadata only, retained, exportable, verifiable.

Contract:

* The record holds the notice (reference, source, time), the URLs with their resolution
  answers and times, where the addresses sat on the agent host's segments (interface,
  next hop, MAC, how and when learned), the customer assignment, and every action on the
  ticket, plus the audit records about it. Never content: the ISP preserves content at
  the hosting side.
* Retention: :class:`RetentionPolicy` gives days per jurisdiction (default 365) counted
  from the ticket's close (or from its last event while open); :func:`may_delete` is
  False before that, and always while a legal hold is set. Nothing is deleted early.
* :func:`build_bundle` returns a JSON bundle ``{"files": {name: text}, "manifest": {...}}``
  where the manifest lists the SHA-256 of every file and is itself chained to the audit
  log: it names the audit head (``last_id``/``last_hash``) at export time, and
  the service appends an ``evidence.export`` audit record carrying the manifest hash.
* :func:`verify_bundle` recomputes every hash and the manifest hash; it returns the list of
  problems (empty = verifies).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edgeagent.store.base import AuditRecord
from edgeagent.takedown.tickets import Ticket, ticket_to_json

BUNDLE_FORMAT = "edgeagent-takedown-evidence/1"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Retention days per jurisdiction; ``default_days`` for any other."""

    default_days: int = 365
    by_jurisdiction: Mapping[str, int] = field(default_factory=dict)

    def days(self, jurisdiction: str) -> int:
        return int(self.by_jurisdiction.get(jurisdiction, self.default_days))


def retain_until(ticket: Ticket, policy: RetentionPolicy) -> datetime:
    """The earliest time the record may be deleted (ignoring a legal hold)."""
    base = ticket.events[-1].at if ticket.events else ticket.opened_at
    return base + timedelta(days=policy.days(ticket.jurisdiction))


def may_delete(ticket: Ticket, policy: RetentionPolicy, now: datetime) -> bool:
    """True only for closed tickets without legal hold past their retention period."""
    return ticket.closed and not ticket.legal_hold and now >= retain_until(ticket, policy)


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _audit_json(r: AuditRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at.isoformat(),
        "actor": r.actor,
        "action": r.action,
        "subject": r.subject,
        "detail": dict(r.detail),
        "prev_hash": r.prev_hash,
        "row_hash": r.row_hash,
    }


def build_bundle(
    ticket: Ticket,
    audit: Sequence[AuditRecord],
    *,
    audit_head: tuple[int, str],
    policy: RetentionPolicy,
    exported_by: str,
    now: datetime,
) -> dict[str, Any]:
    """The evidence bundle for ``ticket`` (see the module docstring).

    ``audit`` are the audit records about the ticket; ``audit_head`` is
    :meth:`Store.audit_head` at export time.
    """
    t = ticket_to_json(ticket)
    files = {
        "notice.json": _canonical(
            {
                "reference": ticket.reference,
                "source": ticket.source,
                "jurisdiction": ticket.jurisdiction,
                "notice_received_at": t["notice_received_at"],
            }
        ),
        "urls.json": _canonical(t["urls"]),
        "assignment.json": _canonical(
            {
                "customer_id": ticket.customer_id,
                "service_id": ticket.service_id,
                "contact": ticket.contact,
                "origin": ticket.assignment_origin,
            }
        ),
        "segments.json": _canonical(t["segments"]),
        "actions.json": _canonical(t["events"]),
        "ticket.json": _canonical(t),
        "audit.json": _canonical([_audit_json(r) for r in audit]),
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "ticket_id": ticket.id,
        "exported_at": now.isoformat(),
        "exported_by": exported_by,
        "retention_days": policy.days(ticket.jurisdiction),
        "retain_until": retain_until(ticket, policy).isoformat(),
        "legal_hold": ticket.legal_hold,
        "audit_anchor": {"last_id": audit_head[0], "last_hash": audit_head[1]},
        "files": {name: _sha(text) for name, text in sorted(files.items())},
    }
    return {"files": files, "manifest": manifest, "manifest_sha256": _sha(_canonical(manifest))}


def verify_bundle(bundle: Mapping[str, Any]) -> list[str]:
    """Problems found in ``bundle``; an empty list means every hash matches."""
    problems: list[str] = []
    try:
        files: Mapping[str, str] = bundle["files"]
        manifest: Mapping[str, Any] = bundle["manifest"]
        listed: Mapping[str, str] = manifest["files"]
    except (KeyError, TypeError):
        return ["not an evidence bundle"]
    if manifest.get("format") != BUNDLE_FORMAT:
        problems.append("unknown bundle format")
    if _sha(_canonical(dict(manifest))) != bundle.get("manifest_sha256"):
        problems.append("manifest hash does not match")
    for name in sorted(set(files) | set(listed)):
        if name not in listed:
            problems.append(f"{name}: not in manifest")
        elif name not in files:
            problems.append(f"{name}: missing")
        elif _sha(files[name]) != listed[name]:
            problems.append(f"{name}: hash does not match")
    return problems
