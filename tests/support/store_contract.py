"""The store contract as one test suite that every backend runs.

A backend's test module subclasses :class:`StoreContract` as ``Test...`` and provides a
``harness`` fixture (a :class:`StoreHarness`): how to open a store on a fresh database
and how to look at that database directly. The SQLite half runs in
``tests/unit/test_store.py``, the PostgreSQL half (a real server) in
``tests/integration/test_store_postgresql.py``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest

from edgeagent.deadline_clock import ClockMark
from edgeagent.errors import Conflict, InvalidTransition, NotFound, StoreError
from edgeagent.intake.base import IntakeChannel, IntakeContent, IntakeState, NewIntakeItem
from edgeagent.model import Action, DecisionStatus, Entry, Indicator, NoticeSource, Scope
from edgeagent.store.base import AuditNote, GenerationStatus, NewDecision, Store, TargetSearch

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

Clock = Callable[[], datetime]


class StoreHarness(Protocol):
    """One fresh database of one backend."""

    schema_version: int
    """The schema version a store of this backend brings its database to."""

    def open(self, clock: Clock | None = None) -> Store:
        """A store on the database (the same one every time); the caller closes it."""
        ...

    def count_rows(self, table: str) -> int:
        """Rows in ``table``, read past the store."""
        ...

    def insert_stale_loading(self, feed: str) -> None:
        """A generation of ``feed`` left ``_loading`` since 1970, as a crash would leave."""
        ...


def entries(n: int, *, prefix: str = "d", action: Action = Action.BLOCK) -> Iterator[Entry]:
    for i in range(n):
        yield Entry(
            Indicator(Scope.DOMAIN, f"{prefix}{i}.example"),
            action,
            "feedA",
            category="csam",
            reference=f"ref-{i}",
            first_seen=T0,
            last_seen=T0 + timedelta(hours=1),
        )


def new_decision(
    value: str = "bad.example.com",
    *,
    status: DecisionStatus = DecisionStatus.ACTIVE,
    action: Action = Action.BLOCK,
    reference: str = "case-1",
    source: NoticeSource = NoticeSource.HOTLINE,
) -> NewDecision:
    return NewDecision(
        indicator=Indicator(Scope.HOST, value),
        action=action,
        actor="alice",
        reason="hotline report",
        reference=reference,
        notice_source=source,
        notice_received_at=T0,
        status=status,
        expires_at=T0 + timedelta(days=30),
        category="csam",
    )


class StoreContract:
    """Every test here runs against each backend (``harness`` comes from the subclass)."""

    @pytest.fixture
    def store(self, harness: StoreHarness) -> Iterator[Store]:
        s = harness.open()
        yield s
        s.close()

    # --- lifecycle --------------------------------------------------------------------

    def test_fresh_db_is_at_current_version(self, store: Store, harness: StoreHarness) -> None:
        assert store.schema_version() == harness.schema_version >= 1
        assert store.policy_version() == 0
        assert store.audit_head() == (0, "")

    def test_closed_store_refuses_calls(self, harness: StoreHarness) -> None:
        s = harness.open()
        s.close()
        s.close()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            s.policy_version()

    def test_naive_datetime_refused(self, store: Store) -> None:
        naive = NewDecision(
            indicator=Indicator(Scope.HOST, "x.example"),
            action=Action.BLOCK,
            actor="a",
            reason="r",
            reference="c",
            notice_source=NoticeSource.PUBLIC,
            notice_received_at=datetime(2024, 1, 1),
            status=DecisionStatus.ACTIVE,
        )
        with pytest.raises(StoreError, match="naive"):
            store.add_decision(naive)
        naive_entry = Entry(
            Indicator(Scope.DOMAIN, "n.example"), Action.BLOCK, "f", first_seen=datetime(2024, 1, 1)
        )
        with pytest.raises(StoreError, match="naive"):
            store.add_generation("feedA", [naive_entry], status=GenerationStatus.LIVE)
        assert store.live_generation("feedA") is None

    def test_state_survives_reopen(self, harness: StoreHarness) -> None:
        s = harness.open()
        d = s.add_decision(new_decision(), AuditNote("decision.create"))
        gen = s.add_generation("feedA", entries(5), status=GenerationStatus.LIVE)
        v = s.policy_version()
        s.close()
        s2 = harness.open()
        assert s2.get_decision(d.id) == d
        assert s2.policy_version() == v
        assert s2.live_generation("feedA") == gen
        assert list(s2.generation_entries(gen.id)) == list(entries(5))
        assert s2.verify_audit().ok
        s2.close()

    # --- generations ------------------------------------------------------------------

    def test_generation_roundtrip_streams_entries(self, store: Store) -> None:
        gen = store.add_generation(
            "feedA", entries(1000), status=GenerationStatus.LIVE, serial="42", meta={"etag": "x"}
        )
        assert gen.status is GenerationStatus.LIVE
        assert gen.entry_count == 1000
        assert gen.serial == "42"
        assert gen.meta == {"etag": "x"}
        assert gen.created_at.tzinfo is not None
        it = store.generation_entries(gen.id)
        assert not isinstance(it, list)
        got = list(it)
        assert got == list(entries(1000))
        assert got[5].first_seen == T0
        assert got[5].first_seen is not None
        assert got[5].first_seen.utcoffset() == timedelta(0)
        assert store.live_generation("feedA") == gen
        assert store.feeds() == ["feedA"]

    def test_empty_generation(self, store: Store) -> None:
        gen = store.add_generation("feedA", entries(0), status=GenerationStatus.LIVE)
        assert gen.entry_count == 0
        assert list(store.generation_entries(gen.id)) == []

    def test_live_supersedes_and_bumps_policy(self, store: Store) -> None:
        v0 = store.policy_version()
        g1 = store.add_generation("feedA", entries(3), status=GenerationStatus.LIVE)
        assert store.policy_version() == v0 + 1
        g2 = store.add_generation("feedA", entries(2), status=GenerationStatus.LIVE)
        assert store.policy_version() == v0 + 2
        assert store.live_generation("feedA") == g2
        assert store.get_generation(g1.id).status is GenerationStatus.SUPERSEDED
        # Other feeds are independent.
        store.add_generation("feedB", entries(1), status=GenerationStatus.LIVE)
        assert store.live_generation("feedA") == g2

    def test_held_generation_promote_and_discard(self, store: Store) -> None:
        live = store.add_generation("feedA", entries(10), status=GenerationStatus.LIVE)
        v = store.policy_version()
        h1 = store.add_generation(
            "feedA", entries(1), status=GenerationStatus.HELD, hold_reason="90% removed"
        )
        assert store.policy_version() == v  # held changes nothing enforced
        assert store.held_generation("feedA") == h1
        assert h1.hold_reason == "90% removed"
        h2 = store.add_generation("feedA", entries(2), status=GenerationStatus.HELD)
        assert store.get_generation(h1.id).status is GenerationStatus.DISCARDED
        assert store.live_generation("feedA") == live

        promoted = store.promote_generation(h2.id)
        assert promoted.status is GenerationStatus.LIVE
        assert store.policy_version() == v + 1
        assert store.get_generation(live.id).status is GenerationStatus.SUPERSEDED
        assert store.held_generation("feedA") is None

        with pytest.raises(InvalidTransition):
            store.promote_generation(live.id)  # superseded, not held
        with pytest.raises(InvalidTransition):
            store.discard_generation(h2.id)  # live: the last good snapshot stays
        h3 = store.add_generation("feedA", entries(1), status=GenerationStatus.HELD)
        assert store.discard_generation(h3.id).status is GenerationStatus.DISCARDED
        assert store.discard_generation(h3.id).status is GenerationStatus.DISCARDED

    def test_new_live_discards_stale_held(self, store: Store) -> None:
        store.add_generation("feedA", entries(10), status=GenerationStatus.LIVE)
        held = store.add_generation("feedA", entries(1), status=GenerationStatus.HELD)
        store.add_generation("feedA", entries(11), status=GenerationStatus.LIVE)
        assert store.held_generation("feedA") is None
        assert store.get_generation(held.id).status is GenerationStatus.DISCARDED

    def test_add_generation_refuses_other_statuses(self, store: Store) -> None:
        with pytest.raises(StoreError):
            store.add_generation("feedA", entries(1), status=GenerationStatus.SUPERSEDED)

    def test_failed_ingest_leaves_nothing_visible(
        self, store: Store, harness: StoreHarness
    ) -> None:
        live = store.add_generation("feedA", entries(5), status=GenerationStatus.LIVE)
        v = store.policy_version()

        def broken() -> Iterator[Entry]:
            yield from entries(3)
            raise ValueError("parse error at line 4")

        with pytest.raises(ValueError, match="line 4"):
            store.add_generation("feedA", broken(), status=GenerationStatus.LIVE)
        assert store.live_generation("feedA") == live
        assert store.policy_version() == v
        assert [g.id for g in store.generations("feedA")] == [live.id]
        assert harness.count_rows("generation_entries") == 5
        assert harness.count_rows("generations") == 1

    def test_unknown_generation(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.generation_entries(999)
        with pytest.raises(NotFound):
            store.promote_generation(999)
        assert store.live_generation("nope") is None

    def test_prune_keeps_live_held_and_newest(self, store: Store, harness: StoreHarness) -> None:
        gens = [
            store.add_generation("feedA", entries(4, prefix=f"g{i}-"), status=GenerationStatus.LIVE)
            for i in range(5)
        ]
        held = store.add_generation("feedA", entries(1), status=GenerationStatus.HELD)
        other = store.add_generation("feedB", entries(2), status=GenerationStatus.LIVE)
        assert store.prune_generations("feedA", keep=1) == 3  # gens 0..2 go, 3 is kept
        remaining = {g.id for g in store.generations("feedA")}
        assert remaining == {gens[3].id, gens[4].id, held.id}
        assert store.prune_generations("feedA", keep=0) == 1
        assert store.live_generation("feedA") == gens[4]
        assert len(list(store.generation_entries(gens[4].id))) == 4
        assert len(list(store.generation_entries(other.id))) == 2
        assert harness.count_rows("generation_entries") == 4 + 1 + 2

    def test_prune_removes_stale_loading(self, harness: StoreHarness) -> None:
        s = harness.open(lambda: T0)
        harness.insert_stale_loading("feedA")
        assert s.generations("feedA") == []
        assert s.feeds() == []
        assert s.prune_generations("feedA", keep=5) == 1
        assert harness.count_rows("generations") == 0
        s.close()

    def test_open_stream_does_not_block_writers(self, store: Store) -> None:
        gen = store.add_generation("feedA", entries(100), status=GenerationStatus.LIVE)
        stream = store.generation_entries(gen.id)
        first = next(stream)
        # While the stream is open on its snapshot, writes go ahead; the stream is unaffected.
        store.add_decision(new_decision())
        newer = store.add_generation("feedA", entries(3), status=GenerationStatus.LIVE)
        assert store.prune_generations("feedA", keep=5) == 0
        assert [first, *stream] == list(entries(100))
        assert store.live_generation("feedA") == newer

    def test_abandoned_stream_frees_its_connection(self, store: Store) -> None:
        gen = store.add_generation("feedA", entries(50), status=GenerationStatus.LIVE)
        for _ in range(30):  # more than any pool holds: each must give its connection back
            stream = store.generation_entries(gen.id)
            next(stream)
            stream.close()
        assert store.policy_version() == 1

    def test_generation_changes_name_removed_and_added_entries(self, store: Store) -> None:
        old = store.add_generation("feedA", entries(6), status=GenerationStatus.LIVE)
        kept = list(entries(6))[2:]
        moved = replace(kept[0], reference="ref-moved")  # one field changed: out and in
        fresh = list(entries(2, prefix="n"))
        new = store.add_generation(
            "feedA", [moved, *kept[1:], *fresh], status=GenerationStatus.LIVE
        )
        changes = store.generation_changes(old.id, new.id)
        removed = [*list(entries(6))[:2], kept[0]]
        assert sorted(changes.removed, key=repr) == sorted(removed, key=repr)
        assert sorted(changes.added, key=repr) == sorted([moved, *fresh], key=repr)
        same = store.generation_changes(new.id, new.id)
        assert (same.removed, same.added) == ((), ())
        with pytest.raises(NotFound):
            store.generation_changes(old.id, new.id + 1000)

    # --- database status ----------------------------------------------------------------

    def test_database_status_of_an_open_store(self, store: Store) -> None:
        status = store.database_status(timeout=2.0)
        assert (status.reachable, status.error) == (True, "")
        assert not status.synchronous  # no standby behind a contract database
        assert status.standbys == ()
        assert status.to_dict()["backend"] == status.backend != ""
        assert store.database_status(timeout=2.0) == status  # asking changes nothing

    # --- decisions and policy_version ---------------------------------------------------

    def test_add_and_get_decision(self, store: Store) -> None:
        v = store.policy_version()
        d = store.add_decision(new_decision())
        assert isinstance(d.id, int)
        assert d.status is DecisionStatus.ACTIVE
        assert d.indicator == Indicator(Scope.HOST, "bad.example.com")
        assert d.notice_received_at == T0
        assert d.expires_at == T0 + timedelta(days=30)
        assert [e.status for e in d.history] == [DecisionStatus.ACTIVE]
        assert store.get_decision(d.id) == d
        assert store.policy_version() == v + 1
        with pytest.raises(NotFound):
            store.get_decision(999)

    def test_hold_and_jurisdiction_are_stored(self, store: Store) -> None:
        held = replace(new_decision("held.example"), hold=True, jurisdiction="DE-BY")
        d = store.add_decision(held)
        assert (d.hold, d.jurisdiction) == (True, "DE-BY")
        plain = store.add_decision(new_decision("plain.example"))
        assert (plain.hold, plain.jurisdiction) == (False, "")
        listed = {x.indicator.value: x for x in store.list_decisions(reference="case-1")}
        assert (listed["held.example"].hold, listed["held.example"].jurisdiction) == (
            True,
            "DE-BY",
        )
        assert store.get_decision(d.id) == d

    def test_duplicate_open_decision_conflicts(self, store: Store) -> None:
        d = store.add_decision(new_decision())
        with pytest.raises(Conflict) as info:
            store.add_decision(new_decision())
        msg = str(info.value)
        assert "bad.example.com" not in msg  # never the entry in plain text
        assert d.indicator.ref in msg
        # Pending counts as open too.
        store.add_decision(new_decision("p.example.com", status=DecisionStatus.PENDING_APPROVAL))
        with pytest.raises(Conflict):
            store.add_decision(new_decision("p.example.com"))
        # A different action on the same indicator is a different decision.
        store.add_decision(new_decision(action=Action.ALLOW))
        # Once revoked, the indicator can be decided again.
        store.set_decision_status(d.id, DecisionStatus.REVOKED, actor="bob", reason="legal")
        again = store.add_decision(new_decision())
        assert again.id != d.id

    def test_add_decision_refuses_closed_status(self, store: Store) -> None:
        with pytest.raises(InvalidTransition):
            store.add_decision(new_decision(status=DecisionStatus.REVOKED))

    def test_decision_and_audit_in_one_transaction(self, store: Store) -> None:
        d = store.add_decision(new_decision(), AuditNote("decision.create", {"n": 1}))
        store.set_decision_status(
            d.id, DecisionStatus.REVOKED, actor="bob", reason="r", audit=AuditNote("x.revoke")
        )
        rows = store.audit_since()
        assert [(r.actor, r.action, r.subject) for r in rows] == [
            ("alice", "decision.create", f"decision:{d.id}"),
            ("bob", "x.revoke", f"decision:{d.id}"),
        ]
        assert rows[0].detail == {"n": 1}
        # A refused change writes no audit row either.
        store.add_decision(new_decision(action=Action.ALLOW), AuditNote("a"))
        with pytest.raises(Conflict):
            store.add_decision(new_decision(action=Action.ALLOW), AuditNote("b"))
        assert [r.action for r in store.audit_since()][-1] == "a"

    def test_status_history_and_policy_bumps(self, store: Store) -> None:
        v = store.policy_version()
        d = store.add_decision(new_decision(status=DecisionStatus.PENDING_APPROVAL))
        assert store.policy_version() == v  # pending changes nothing enforced
        d = store.set_decision_status(
            d.id, DecisionStatus.ACTIVE, actor="bob", reason="approved", approved_by="bob"
        )
        assert d.approved_by == "bob"
        assert store.policy_version() == v + 1
        d = store.set_decision_status(d.id, DecisionStatus.REVOKED, actor="carol", reason="legal")
        assert store.policy_version() == v + 2
        assert [(e.actor, e.status) for e in d.history] == [
            ("alice", DecisionStatus.PENDING_APPROVAL),
            ("bob", DecisionStatus.ACTIVE),
            ("carol", DecisionStatus.REVOKED),
        ]
        with pytest.raises(InvalidTransition) as info:
            store.set_decision_status(d.id, DecisionStatus.ACTIVE, actor="x", reason="y")
        assert info.value.allowed == ()
        with pytest.raises(NotFound):
            store.set_decision_status(999, DecisionStatus.REVOKED, actor="x", reason="y")
        # A refused transition changes nothing.
        assert store.get_decision(d.id).history == d.history
        rejected = store.add_decision(
            new_decision("r.example", status=DecisionStatus.PENDING_APPROVAL)
        )
        store.set_decision_status(rejected.id, DecisionStatus.REJECTED, actor="bob", reason="no")
        assert store.policy_version() == v + 2

    def test_list_decisions_filters(self, store: Store) -> None:
        a = store.add_decision(new_decision("a.example", reference="case-1"))
        b = store.add_decision(
            new_decision("b.example", reference="case-2", source=NoticeSource.LAW_ENFORCEMENT)
        )
        c = store.add_decision(new_decision("c.example", status=DecisionStatus.PENDING_APPROVAL))
        assert [d.id for d in store.list_decisions()] == [a.id, b.id, c.id]
        assert [d.id for d in store.list_decisions(status=DecisionStatus.ACTIVE)] == [a.id, b.id]
        assert [d.id for d in store.list_decisions(source=NoticeSource.LAW_ENFORCEMENT)] == [b.id]
        assert [d.id for d in store.list_decisions(reference="case-1")] == [a.id, c.id]
        assert [d.id for d in store.list_decisions(scope="host", limit=1, offset=1)] == [b.id]
        assert store.list_decisions(scope="domain") == []
        assert [d.id for d in store.active_decisions()] == [a.id, b.id]
        assert all(d.history for d in store.active_decisions())

    def test_count_decisions(self, store: Store) -> None:
        store.add_decision(new_decision("a.example"))
        store.add_decision(new_decision("b.example", status=DecisionStatus.PENDING_APPROVAL))
        store.add_decision(new_decision("c.example", status=DecisionStatus.PENDING_APPROVAL))
        assert store.count_decisions() == 3
        assert store.count_decisions(status=DecisionStatus.PENDING_APPROVAL) == 2
        assert store.count_decisions(status=DecisionStatus.REVOKED) == 0

    def test_search_decisions_by_target(self, store: Store) -> None:
        def url(value: str) -> NewDecision:
            return replace(new_decision(), indicator=Indicator(Scope.URL, value))

        on_host = store.add_decision(url("http://shop_1.example/a.html"))
        with_port = store.add_decision(url("https://shop_1.example:8443/b.html"))
        store.add_decision(url("http://shop_1.example.other/c.html"))  # another host
        store.add_decision(url("http://shopx1.example/d.html"))  # "_" is no wildcard
        name = store.add_decision(new_decision("shop_1.example"))
        found = store.list_decisions(target=TargetSearch(("shop_1.example",), "shop_1.example"))
        assert [d.id for d in found] == [on_host.id, with_port.id, name.id]
        exact = store.list_decisions(target=TargetSearch(("http://shop_1.example/a.html",)))
        assert [d.id for d in exact] == [on_host.id]
        assert store.list_decisions(target=TargetSearch(())) == []
        assert store.list_decisions(target=TargetSearch(("x",)), status=DecisionStatus.ACTIVE) == []

    def test_add_decisions_is_one_transaction_with_conflicts_in_place(self, store: Store) -> None:
        existing = store.add_decision(new_decision("old.example"))
        before = store.policy_version()
        batch = [
            (new_decision("n1.example"), AuditNote("decision.create", {"n": 1})),
            (new_decision("old.example"), AuditNote("decision.create", {"n": 2})),
            (new_decision("n1.example"), None),  # twice in one batch
            (new_decision("n2.example", status=DecisionStatus.PENDING_APPROVAL), None),
        ]
        out = store.add_decisions(batch)
        assert [type(o).__name__ for o in out] == ["Decision", "Conflict", "Conflict", "Decision"]
        assert f"decision {existing.id}" in str(out[1])
        assert store.count_decisions() == 3
        assert store.policy_version() == before + 1  # the batch is one change
        assert [r.detail for r in store.audit_since()] == [{"n": 1}]  # only what was stored
        assert store.verify_audit().ok
        assert store.add_decisions([]) == []

    def test_add_decisions_answers_what_is_stored(self, store: Store) -> None:
        """A large batch: each answer equals the decision read back, ids follow the batch,
        one audit row each in batch order, and the chain verifies."""
        batch = [
            (
                replace(new_decision(f"b{i}.example"), hold=i % 2 == 0, jurisdiction="EX"),
                AuditNote("decision.create", {"n": i}),
            )
            for i in range(300)
        ]
        out = store.add_decisions(batch)
        assert all(not isinstance(d, Conflict) for d in out)
        assert [store.get_decision(d.id) for d in out if not isinstance(d, Conflict)] == out
        ids = [d.id for d in out if not isinstance(d, Conflict)]
        assert ids == sorted(ids)
        audit = store.audit_since()
        assert [r.subject for r in audit] == [f"decision:{i}" for i in ids]
        assert [r.detail["n"] for r in audit] == list(range(300))
        assert store.verify_audit().ok

    def test_failed_batch_stores_nothing(self, store: Store) -> None:
        naive = replace(new_decision("n3.example"), notice_received_at=datetime(2026, 1, 1))
        with pytest.raises(StoreError):
            store.add_decisions([(new_decision("n1.example"), None), (naive, None)])
        assert store.count_decisions() == 0
        store.add_decision(new_decision("n1.example"))  # the store still works
        assert store.count_decisions() == 1

    def test_active_decisions_stream_many(self, store: Store) -> None:
        made = [store.add_decision(new_decision(f"h{i}.example")) for i in range(600)]
        assert [d.id for d in store.active_decisions()] == [d.id for d in made]

    def test_due_decisions_are_the_active_ones_past_their_end(self, store: Store) -> None:
        due = store.add_decision(new_decision("due.example"))  # expires T0 + 30 days
        store.add_decision(new_decision("pending.example", status=DecisionStatus.PENDING_APPROVAL))
        later = replace(new_decision("later.example"), expires_at=T0 + timedelta(days=60))
        store.add_decision(later)
        assert store.due_decisions(T0) == []
        found = store.due_decisions(T0 + timedelta(days=30))
        assert [d.id for d in found] == [due.id]
        assert found[0].history  # as get_decision gives it
        assert found == [store.get_decision(due.id)]

    def test_decision_changes_since_a_mark(self, store: Store) -> None:
        """A backend that keeps marks names every decision that entered or left
        ``active`` after one; one that cannot say answers ``None``."""
        first = store.decision_changes(0)
        if first is None:
            return
        assert (first.active, first.inactive) == ((), ())
        kept = store.add_decision(new_decision("kept.example"))
        gone = store.add_decision(new_decision("gone.example"))
        since = store.decision_changes(first.mark)
        assert since is not None
        assert [d.id for d in since.active] == [kept.id, gone.id]
        store.set_decision_status(gone.id, DecisionStatus.REVOKED, actor="bob", reason="x")
        store.add_decision(new_decision("pending.example", status=DecisionStatus.PENDING_APPROVAL))
        later = store.decision_changes(since.mark)
        assert later is not None
        assert later.active == ()
        assert gone.id in later.inactive
        assert store.decision_changes(later.mark) == replace(later, active=(), inactive=())

    def test_expire_due_decisions(self, harness: StoreHarness) -> None:
        clock = [T0]
        s = harness.open(lambda: clock[0])
        d = s.add_decision(new_decision())  # expires T0 + 30 days
        forever = s.add_decision(
            NewDecision(
                Indicator(Scope.HOST, "forever.example"),
                Action.BLOCK,
                "alice",
                "r",
                "c",
                NoticeSource.HOTLINE,
                T0,
                DecisionStatus.ACTIVE,
            )
        )
        v = s.policy_version()
        assert s.expire_due_decisions() == []
        clock[0] = T0 + timedelta(days=31)
        expired = s.expire_due_decisions()
        assert [x.id for x in expired] == [d.id]
        assert expired[0].status is DecisionStatus.EXPIRED
        assert expired[0].history[-1].actor == "system"
        assert expired[0].history[-1].at == T0 + timedelta(days=31)
        assert s.policy_version() == v + 1
        assert s.get_decision(forever.id).status is DecisionStatus.ACTIVE
        s.close()

    def test_concurrent_writers(self, store: Store) -> None:
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for i in range(250):
                    d = store.add_decision(new_decision(f"t{t}-{i}.example", reference=f"c{t}"))
                    store.append_audit("alice", "decision.create", f"decision:{d.id}", {"t": t})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        all_decisions = store.list_decisions(limit=10_000)
        assert len(all_decisions) == 2000
        assert len({d.id for d in all_decisions}) == 2000
        assert len({d.indicator for d in all_decisions}) == 2000
        assert store.policy_version() == 2000
        result = store.verify_audit()
        assert result.ok
        assert result.rows == 2000

    def test_concurrent_duplicates_only_one_wins(self, store: Store) -> None:
        barrier = threading.Barrier(8)
        outcomes: list[str] = []
        lock = threading.Lock()

        def worker() -> None:
            barrier.wait()
            try:
                store.add_decision(new_decision("race.example"))
                result = "ok"
            except Conflict:
                result = "conflict"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]

    # --- audit ------------------------------------------------------------------------

    def test_audit_chain_links(self, store: Store) -> None:
        first = store.append_audit("alice", "feed.approve", "feed:iwf", {"n": 1})
        second = store.append_audit("bob", "auth.denied", "token:3")
        assert (first.id, second.id) == (1, 2)
        assert first.prev_hash == "0" * 64
        assert second.prev_hash == first.row_hash
        assert store.audit_head() == (2, second.row_hash)
        assert store.audit_since() == [first, second]
        assert store.audit_since(datetime.now(UTC) + timedelta(days=1)) == []
        assert store.audit_since(limit=1) == [first]
        assert store.verify_audit().ok

    def test_audit_since_follows_the_order_written_across_a_clock_step_back(
        self, harness: StoreHarness
    ) -> None:
        now = [T0]
        store = harness.open(clock=lambda: now[0])
        try:
            rows = []
            for n, at in enumerate([T0, T0 + timedelta(hours=1), T0 - timedelta(hours=1)]):
                now[0] = at  # +1 h, then -2 h
                rows.append(store.append_audit("alice", "decision.create", f"decision:{n}"))
            assert store.audit_since(T0 + timedelta(minutes=30)) == rows[1:]
            assert store.audit_since(T0) == rows
            assert store.verify_audit().ok
        finally:
            store.close()

    # --- tokens -----------------------------------------------------------------------

    def test_tokens(self, store: Store) -> None:
        digest = hashlib.sha256(b"s3cret-token-value").digest()
        t = store.add_token("noc", "reader", digest)
        assert t.name == "noc"
        assert not t.revoked
        assert store.token_by_hash(digest) == t
        assert store.token_by_hash(hashlib.sha256(b"other").digest()) is None
        with pytest.raises(Conflict):
            store.add_token("noc", "reader", hashlib.sha256(b"x").digest())
        with pytest.raises(Conflict):
            store.add_token("other", "reader", digest)
        with pytest.raises(StoreError):
            store.add_token("bad", "reader", b"short")
        revoked = store.revoke_token(t.id)
        assert revoked.revoked
        token = store.token_by_hash(digest)
        assert token is not None
        assert token.revoked
        assert [x.id for x in store.list_tokens()] == [t.id]
        # The name is free again once revoked.
        store.add_token("noc", "reader", hashlib.sha256(b"new").digest())
        with pytest.raises(NotFound):
            store.revoke_token(999)

    def test_rpz_serial_only_moves_forward(self, harness: StoreHarness) -> None:
        store = harness.open()
        try:
            assert store.rpz_serial() is None
            store.save_rpz_serial(7)
            store.save_rpz_serial(5)  # a deposed leader's older serial is ignored
            assert store.rpz_serial() == 7
            store.save_rpz_serial(4294967290)  # more than half the space ahead: older
            assert store.rpz_serial() == 7
            for serial in (2_000_000_000, 4_000_000_000, 4294967295):
                store.save_rpz_serial(serial)
            assert store.rpz_serial() == 4294967295
            store.save_rpz_serial(3)  # across the wrap (RFC 1982): newer
            assert store.rpz_serial() == 3
        finally:
            store.close()
        reopened = harness.open()  # central state: another agent on the store sees it
        try:
            assert reopened.rpz_serial() == 3
        finally:
            reopened.close()

    def test_clock_mark_is_kept_per_host_and_never_goes_back(self, harness: StoreHarness) -> None:
        mark = ClockMark("a.example", T0, "boot-1", 100.5)
        other = ClockMark("b.example", T0 - timedelta(days=1), "boot-9", 1.0)
        later = ClockMark("a.example", T0 + timedelta(seconds=60), "boot-2", 2.25)
        store = harness.open()
        try:
            assert store.clock_mark("a.example") is None
            store.save_clock_mark(mark)
            assert store.clock_mark("a.example") == mark
            store.save_clock_mark(replace(mark, at=T0 - timedelta(hours=1), monotonic=9.0))
            assert store.clock_mark("a.example") == mark  # an earlier reading is ignored
            store.save_clock_mark(other)  # another host's clock is its own
            store.save_clock_mark(later)  # a later one replaces it, boot and all
        finally:
            store.close()
        reopened = harness.open()  # what the next process on the host resumes from
        try:
            assert reopened.clock_mark("a.example") == later
            assert reopened.clock_mark("b.example") == other
        finally:
            reopened.close()

    # --- the intake triage queue

    def test_intake_item_roundtrip_and_audit(self, store: Store) -> None:
        content = IntakeContent(urls=("http://a.example/x",), category="c", live_video=False)
        item = store.add_intake_item(
            NewIntakeItem("R-AAAAA-BBBBB", IntakeChannel.PUBLIC_REPORT, content),
            AuditNote("intake.receive", {"urls": 1}),
        )
        assert item.state is IntakeState.PENDING
        assert item.content == content
        assert store.get_intake_item(item.id) == item
        last = store.audit_since()[-1]
        assert (last.actor, last.action, last.subject) == (
            "intake",
            "intake.receive",
            f"intake:{item.id}",
        )
        assert "a.example" not in str(last.detail)
        with pytest.raises(Conflict):
            store.add_intake_item(
                NewIntakeItem("R-AAAAA-BBBBB", IntakeChannel.APPEAL, IntakeContent()),
                AuditNote("intake.receive"),
            )

    def test_intake_decided_once_and_filtered(self, store: Store) -> None:
        report = store.add_intake_item(
            NewIntakeItem("R-11111-11111", IntakeChannel.PUBLIC_REPORT, IntakeContent()),
            AuditNote("intake.receive"),
        )
        appeal = store.add_intake_item(
            NewIntakeItem("A-22222-22222", IntakeChannel.APPEAL, IntakeContent(statement="s")),
            AuditNote("intake.receive"),
        )
        with pytest.raises(InvalidTransition):
            store.decide_intake_item(
                appeal.id, IntakeState.ACCEPTED, actor="x", reason="r", audit=AuditNote("a")
            )
        done = store.decide_intake_item(
            report.id,
            IntakeState.REJECTED,
            actor="ana",
            reason="not csam",
            decision_ids=[3, 1],
            audit=AuditNote("intake.rejected"),
        )
        assert (done.state, done.decided_by, done.reason) == (
            IntakeState.REJECTED,
            "ana",
            "not csam",
        )
        assert done.decision_ids == (1, 3)
        assert done.decided_at is not None
        with pytest.raises(InvalidTransition):
            store.decide_intake_item(
                report.id, IntakeState.ACCEPTED, actor="b", reason="r", audit=AuditNote("a")
            )
        assert [i.id for i in store.list_intake_items()] == [appeal.id, report.id]
        assert [i.id for i in store.list_intake_items(state=IntakeState.PENDING)] == [appeal.id]
        assert store.list_intake_items(channel=IntakeChannel.CHALLENGE) == []
        assert store.count_intake_items() == {
            (IntakeChannel.PUBLIC_REPORT, IntakeState.REJECTED): 1,
            (IntakeChannel.APPEAL, IntakeState.PENDING): 1,
        }
        with pytest.raises(NotFound):
            store.get_intake_item(999)
