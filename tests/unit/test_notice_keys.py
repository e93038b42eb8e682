"""Takedown notices carry an idempotency key, claimed before the first attempt.

The claim is the leadership's (recorded in the database by the leader; tested on a real
PostgreSQL in tests/integration/test_leader_fencing.py); here a set stands for that table,
so the delivery rules are what is under test: a confirmed key is not sent again (a leader
that died before saving the ticket), a claimed key never confirmed (a leader killed
mid-send) goes out again under the same key, and a refused claim (a deposed leader) sends
nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import ClassVar

import pytest

from edgeagent.errors import Fenced
from edgeagent.takedown.delivery import Delivery, deliver, notice_key
from edgeagent.takedown.notifiers.base import Notice, Notifier, NotifierConfig, NotifyError
from edgeagent.takedown.tickets import Ticket
from tests.support.tickets import T0, make_ticket


class Recording(Notifier):
    """A channel that keeps what it was given."""

    KIND: ClassVar[str] = "recording"
    Config: ClassVar[type[NotifierConfig]] = NotifierConfig

    def __init__(self, name: str) -> None:
        self.name = name
        self.hosting_team = True
        self.sent: list[Notice] = []

    @classmethod
    def from_config(cls, config: NotifierConfig, *, name: str) -> Notifier:
        return cls(name)

    async def send(self, notice: Notice) -> None:
        self.sent.append(notice)


class Claims:
    """The notice-key table: a key is recorded once, and confirmed once a channel took it."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.confirmed: set[str] = set()

    async def claim(self, key: str) -> bool:
        self.keys.add(key)
        return key not in self.confirmed

    async def confirm(self, key: str) -> None:
        self.confirmed.add(key)


async def _deliver(notifier: Notifier, claims: Claims, version: int = 0) -> tuple[int, bool]:
    t = make_ticket(id=7, version=version)
    out = await deliver(
        t,
        "notice",
        [notifier],
        instruction="remove it",
        attempts=1,
        backoff_seconds=0,
        clock=lambda: T0 + timedelta(minutes=2),
        claim=claims.claim,
        confirm=claims.confirm,
    )
    return len(out.ticket.events) - len(t.events), out.delivered[0][1]


async def test_a_claimed_notice_is_sent_once_with_its_key() -> None:
    mail, claims = Recording("hosting-mail"), Claims()
    assert await _deliver(mail, claims) == (1, True)
    assert [n.idempotency_key for n in mail.sent] == ["ticket:7:v0:notice:hosting-mail"]
    # The same ticket as it was (its leader died before saving it): recorded, not sent.
    events, ok = await _deliver(mail, claims)
    assert (events, ok, len(mail.sent)) == (1, True, 1)
    # The ticket saved since (a later notice of the same kind) is a new notice.
    await _deliver(mail, claims, version=1)
    assert [n.idempotency_key for n in mail.sent][-1] == "ticket:7:v1:notice:hosting-mail"


async def test_a_claimed_notice_never_confirmed_is_sent_again_under_its_key() -> None:
    mail, claims = Recording("hosting-mail"), Claims()
    # The old leader claimed the key and was killed before the channel took the notice.
    assert await claims.claim("ticket:7:v0:notice:hosting-mail")
    assert await _deliver(mail, claims) == (1, True)
    assert [n.idempotency_key for n in mail.sent] == ["ticket:7:v0:notice:hosting-mail"]
    assert claims.confirmed == {"ticket:7:v0:notice:hosting-mail"}


async def test_a_refused_claim_sends_nothing() -> None:
    mail = Recording("hosting-mail")

    async def deposed(key: str) -> bool:
        raise Fenced("a takedown notice", "leader epoch 3 is stale (the database has 4)")

    with pytest.raises(Fenced):
        await deliver(
            make_ticket(id=7),
            "reminder",
            [mail],
            instruction="remove it",
            attempts=3,
            backoff_seconds=0,
            clock=lambda: T0,
            claim=deposed,
        )
    assert mail.sent == []


def test_keys_name_ticket_version_kind_and_channel() -> None:
    t = make_ticket(id=7, version=2)
    keys = {
        notice_key(t, "notice", "hosting-mail", False),
        notice_key(t, "reminder", "hosting-mail", False),
        notice_key(t, "notice", "ticket-hook", False),
        notice_key(t, "notice", "hosting-mail", True),
        notice_key(make_ticket(id=7, version=3), "notice", "hosting-mail", False),
    }
    assert len(keys) == 5
    assert all("shop.hosted.test" not in k for k in keys)  # no list data in a key


class FailingOnce(Recording):
    """A channel whose first try times out."""

    async def send(self, notice: Notice) -> None:
        if not self.failed:
            self.failed = True
            raise NotifyError(self.name, "timed out")
        await super().send(notice)

    failed = False


async def test_a_retry_resends_only_the_failed_channel_under_its_first_key() -> None:
    mail, hook, claims = Recording("hosting-mail"), FailingOnce("ticket-hook"), Claims()

    async def send(t: Ticket, *, retry: bool) -> Delivery:
        return await deliver(
            t,
            "notice",
            [mail, hook],
            instruction="remove it",
            attempts=1,
            backoff_seconds=0,
            clock=lambda: T0 + timedelta(minutes=2),
            claim=claims.claim,
            confirm=claims.confirm,
            retry=retry,
        )

    first = await send(make_ticket(id=7, version=0), retry=False)
    assert [ok for _, ok in first.delivered] == [True, False]
    assert first.failed_attempts == (("ticket-hook", 1),)
    # The ticket saved with the failure (a new version), then the retry job.
    again = await send(replace(first.ticket, version=1), retry=True)
    assert [(n.name, ok) for n, ok in again.delivered] == [("ticket-hook", True)]
    assert len(mail.sent) == 1
    assert [n.idempotency_key for n in hook.sent] == ["ticket:7:v0:notice:ticket-hook"]
