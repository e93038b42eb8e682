"""Ticket state machine, ticket store, evidence bundle and time-to-takedown report."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from edgeagent.errors import InvalidTransition
from edgeagent.takedown.evidence import build_bundle, verify_bundle
from edgeagent.takedown.records import Authorisation
from edgeagent.takedown.retention import RetentionPolicy, may_delete, retain_until
from edgeagent.takedown.tickets import (
    AuthorisationRequired,
    TicketEvent,
    TicketState,
    TicketUrl,
    add_urls,
    check_transition,
    ticket_from_json,
    ticket_to_json,
)
from edgeagent.takedown.ticketstore import MIGRATIONS, SCHEMA_VERSION, TicketStorage, TicketStore
from tests.support.tickets import T0, TicketStoreContract, make_ticket, walk

S = TicketState


def test_full_takedown_path_sets_removal_time_once() -> None:
    t = walk(
        make_ticket(),
        S.UNDER_REVIEW,
        S.TEMPORARILY_REMOVED,
        S.REFERRED,
        S.CONFIRMED_ILLEGAL,
        S.REMOVED_AND_PRESERVED,
        S.EVIDENCE_ISSUED,
    )
    assert t.state is S.EVIDENCE_ISSUED
    assert t.closed
    assert t.removed_at == T0 + timedelta(minutes=20)  # temporarily-removed, not later
    assert t.minutes_to_removal == 20
    assert [e.to_state for e in t.events][-1] == "evidence-issued"
    assert all(e.actor == "alice" for e in t.events[1:])


@pytest.mark.parametrize("from_state", [S.UNDER_REVIEW, S.TEMPORARILY_REMOVED, S.REFERRED])
def test_found_legal_and_restored(from_state: TicketState) -> None:
    t = replace(make_ticket(), state=from_state)
    t = walk(t, S.FOUND_LEGAL, S.RESTORED)
    assert t.state is S.RESTORED
    assert t.closed


def test_illegal_transition_names_allowed_states() -> None:
    t = make_ticket()
    with pytest.raises(InvalidTransition) as err:
        check_transition(t, S.REMOVED_AND_PRESERVED, needs_authorisation=False)
    assert err.value.allowed == ("under-review",)
    assert "allowed: under-review" in str(err.value)
    with pytest.raises(InvalidTransition) as err2:
        check_transition(t, "deleted", needs_authorisation=False)
    assert err2.value.requested == "deleted"
    done = replace(t, state=S.EVIDENCE_ISSUED)
    with pytest.raises(InvalidTransition, match="allowed: none"):
        check_transition(done, S.RECEIVED, needs_authorisation=False)
    confirmed = replace(t, state=S.CONFIRMED_ILLEGAL)
    with pytest.raises(InvalidTransition):
        check_transition(confirmed, S.FOUND_LEGAL, needs_authorisation=False)


def test_authorisation_required_before_temporary_removal() -> None:
    t = replace(make_ticket(source="law-enforcement"), state=S.UNDER_REVIEW)
    with pytest.raises(AuthorisationRequired) as err:
        check_transition(t, S.TEMPORARILY_REMOVED, needs_authorisation=True)
    assert "authorisation" in str(err.value)
    assert err.value.allowed == ("temporarily-removed", "found-legal")
    ok = replace(t, authorisation=Authorisation("Officer A, Example Police", "LE-2026-7", T0))
    assert check_transition(ok, S.TEMPORARILY_REMOVED, needs_authorisation=True) is (
        S.TEMPORARILY_REMOVED
    )


def test_add_urls_batches_and_dedupes() -> None:
    t = make_ticket()
    later = T0 + timedelta(minutes=5)
    again = TicketUrl("http://shop.hosted.test/a", "ref1", ("198.51.100.11",), later, later)
    new = TicketUrl("http://shop.hosted.test/b", "ref2", ("198.51.100.10",), later, later)
    t2 = add_urls(t, (again, new), "system", later)
    assert [u.url for u in t2.urls] == ["http://shop.hosted.test/a", "http://shop.hosted.test/b"]
    assert t2.urls[0].addresses == ("198.51.100.11",)
    assert t2.events[-1].action == "add-urls"


def test_json_round_trip() -> None:
    authorisation = Authorisation("Example Police", "LE-1", T0, "ana", T0 + timedelta(hours=1))
    t = walk(make_ticket(hold=True, authorisation=authorisation), S.UNDER_REVIEW)
    assert ticket_from_json(ticket_to_json(t)) == t


def test_tickets_stored_with_a_bare_authorisation_reference_still_load() -> None:
    t = make_ticket()
    recorded = T0 + timedelta(minutes=7)
    event = TicketEvent(recorded, "sam", "authorise", "law-enforcement authorisation recorded")
    old = {**ticket_to_json(replace(t, events=(*t.events, event))), "authorisation": "LE-7"}
    loaded = ticket_from_json(old).authorisation
    assert loaded == Authorisation("", "LE-7", recorded, "sam", recorded)
    assert ticket_from_json({**old, "authorisation": ""}).authorisation is None


class TestSqliteTicketStore(TicketStoreContract):
    @pytest.fixture
    def open_tickets(self, tmp_path: Path) -> Callable[[], TicketStorage]:
        return lambda: TicketStore(tmp_path / "takedown.sqlite3")


def test_ticket_store_persists_with_safe_settings(tmp_path: Path) -> None:
    path = tmp_path / "state" / "takedown.sqlite3"
    store = TicketStore(path)
    store.create(make_ticket())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_a_version_1_ticket_file_gains_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "takedown.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None)
    for stmt in MIGRATIONS[0]:
        raw.execute(stmt)
    raw.execute("PRAGMA user_version=1")
    old = walk(replace(make_ticket(), id=1, legal_hold=True), S.UNDER_REVIEW, S.TEMPORARILY_REMOVED)
    body = {k: v for k, v in ticket_to_json(old).items() if k != "assignee"}  # v1 had none
    raw.execute(
        "INSERT INTO tickets (id, reference, customer_id, source, state, closed,"
        " notice_received_at, version, body) VALUES (1, 'HL-1', 'cust-a', 'hotline',"
        " 'temporarily-removed', 0, ?, 0, ?)",
        (old.notice_received_at.isoformat(), json.dumps(body)),
    )
    raw.close()
    store = TicketStore(path)
    assert store.get(1) == old
    db = sqlite3.connect(path)
    row = db.execute(
        "SELECT deadline, removed, assignee, legal_hold, removal_minutes FROM tickets"
    ).fetchone()
    assert row == (old.deadline.isoformat(), 1, "", 1, old.minutes_to_removal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()
    store.close()


def test_evidence_bundle_verifies_and_detects_tampering() -> None:
    t = walk(replace(make_ticket(), id=7), S.UNDER_REVIEW, S.TEMPORARILY_REMOVED)
    policy = RetentionPolicy(by_jurisdiction={"XX": 730})
    bundle = build_bundle(
        t, [], audit_head=(42, "ab" * 32), policy=policy, exported_by="sup", now=T0
    )
    assert verify_bundle(bundle) == []
    assert bundle["manifest"]["audit_anchor"] == {"last_id": 42, "last_hash": "ab" * 32}
    assert bundle["manifest"]["retention_days"] == 365
    tampered = {**bundle, "files": {**bundle["files"], "urls.json": "[]"}}
    assert verify_bundle(tampered) == ["urls.json: hash does not match"]
    forged = {**bundle, "manifest": {**bundle["manifest"], "legal_hold": True}}
    assert "manifest hash does not match" in verify_bundle(forged)
    assert verify_bundle({"nope": 1}) == ["not an evidence bundle"]


def test_retention_and_legal_hold() -> None:
    policy = RetentionPolicy(
        default_days=365, by_jurisdiction={"XX": 730}, by_source={"law-enforcement": 1000}
    )
    closed = walk(replace(make_ticket(), state=S.UNDER_REVIEW), S.FOUND_LEGAL, S.RESTORED)
    end = retain_until(closed, policy)
    assert end == closed.events[-1].at + timedelta(days=365)
    assert not may_delete(closed, policy, end - timedelta(seconds=1))
    assert may_delete(closed, policy, end)
    assert not may_delete(replace(closed, legal_hold=True), policy, end + timedelta(days=9999))
    assert not may_delete(replace(closed, jurisdiction="XX"), policy, end)
    assert not may_delete(make_ticket(), policy, end + timedelta(days=9999))  # still open
    # The jurisdiction's figure wins over the source's, the source's over the default.
    police = replace(closed, source="law-enforcement")
    assert policy.days(police) == 1000
    assert policy.days(replace(police, jurisdiction="XX")) == 730
    assert policy.days(replace(police, jurisdiction="YY")) == 1000
