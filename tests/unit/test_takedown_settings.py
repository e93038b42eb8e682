"""``[takedown]``: notifiers and customer sources as plug-in families, old spellings kept.

The last test registers a notifier kind of its own (defined here) and shows that the
config picks it up and the service sends through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from edgeagent.config import ConfigError, load_config
from edgeagent.errors import ConfigProblem
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.store import SqliteStore, open_ticket_store
from edgeagent.takedown.customers.csv import CsvExportConfig
from edgeagent.takedown.customers.http import HttpIpamConfig
from edgeagent.takedown.notifiers.base import Notice, Notifier, NotifierConfig
from edgeagent.takedown.notifiers.kinds import NOTIFIER_KINDS
from edgeagent.takedown.notifiers.smtp import SmtpNotifierConfig
from edgeagent.takedown.notifiers.webhook import WebhookNotifierConfig
from edgeagent.takedown.rules import Job
from edgeagent.takedown.service import TakedownService

OLD_TABLES = """
[takedown.smtp]
host = "127.0.0.1"
sender = "ntd@isp.example"
recipients = ["hosting@isp.example"]

[takedown.webhook]
url = "http://127.0.0.1:8099/hook"
secret_env = "PATH"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeagent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> tuple[ConfigProblem, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_old_notifier_tables_load_as_named_notifiers_with_a_warning(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, OLD_TABLES))
    notifiers = settings.takedown.notifiers
    assert list(notifiers) == ["smtp", "webhook"]
    assert isinstance(notifiers["smtp"], SmtpNotifierConfig)
    assert notifiers["smtp"].recipients == ("hosting@isp.example",)
    assert isinstance(notifiers["webhook"], WebhookNotifierConfig)
    assert [w.path for w in settings.warnings] == ["takedown.smtp", "takedown.webhook"]
    assert "[takedown.notifiers.smtp]" in settings.warnings[0].reason


def test_several_notifiers_of_one_kind(tmp_path: Path) -> None:
    text = """
[takedown.notifiers.hosting]
kind = "smtp"
host = "127.0.0.1"
sender = "ntd@isp.example"
recipients = ["hosting@isp.example"]

[takedown.notifiers.on-call]
kind = "smtp"
host = "127.0.0.1"
port = 25
starttls = false
sender = "ntd@isp.example"
recipients = ["on-call@isp.example"]
"""
    settings = load_config(write(tmp_path, text))
    assert settings.warnings == ()
    on_call = settings.takedown.notifiers["on-call"]
    assert isinstance(on_call, SmtpNotifierConfig)
    assert (on_call.port, on_call.starttls) == (25, False)


def test_errors_name_the_key_as_written(tmp_path: Path) -> None:
    old = write(tmp_path, OLD_TABLES.replace('"http://127.0.0.1:8099/hook"', '"https:///x"'))
    assert problems(old) == (ConfigProblem("takedown.webhook.url", "not a valid URL: no host"),)
    new = write(
        tmp_path,
        '[takedown.notifiers.hook]\nkind = "webhook"\nurl = "http://127.0.0.1/h"\n'
        '[takedown.notifiers.fax]\nkind = "fax"\n',
    )
    assert problems(new) == (
        ConfigProblem("takedown.notifiers.hook", "secret_file or secret_env is required"),
        ConfigProblem("takedown.notifiers.fax.kind", "unknown kind; allowed: smtp, webhook"),
    )
    both = write(tmp_path, OLD_TABLES + '[takedown.notifiers.smtp]\nkind = "webhook"\n')
    assert problems(both) == (
        ConfigProblem("takedown", "set takedown.notifiers.smtp or takedown.smtp, not both"),
    )


def test_customer_sources_by_kind(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text("prefix,customer_id\n", encoding="utf-8")
    text = (
        '[[takedown.customers]]\nkind = "csv"\npath = "customers.csv"\n'
        '[[takedown.customers]]\nkind = "http"\nurl = "https://ipam.isp.example/a"\n'
    )
    settings = load_config(write(tmp_path, text))
    csv_source, ipam = settings.takedown.customers
    assert isinstance(csv_source, CsvExportConfig)
    assert csv_source.path == tmp_path / "customers.csv"
    assert isinstance(ipam, HttpIpamConfig)
    wrong = write(tmp_path, '[[takedown.customers]]\nkind = "http"\npath = "customers.csv"\n')
    assert set(problems(wrong)) == {
        ConfigProblem("takedown.customers[0].url", "required key missing"),
        ConfigProblem("takedown.customers[0].path", "unknown key"),
    }


# ------------------------------------------------------------- a kind from outside


class RecordingNotifierConfig(NotifierConfig):
    kind: Literal["recording"]
    label: str


@dataclass(frozen=True, slots=True)
class RecordingNotifier(Notifier):
    """Keeps every notice in memory (class-wide, so the test can see what was sent)."""

    KIND = "recording"
    Config = RecordingNotifierConfig
    sent: ClassVar[list[tuple[str, str, Notice]]] = []

    name: str
    label: str = ""
    hosting_team: bool = True

    @classmethod
    def from_config(cls, config: NotifierConfig, *, name: str) -> RecordingNotifier:
        assert isinstance(config, RecordingNotifierConfig)
        return cls(name, config.label, config.hosting_team)

    async def send(self, notice: Notice) -> None:
        RecordingNotifier.sent.append((self.name, self.label, notice))


DESK = """
[[takedown.customers]]
kind = "csv"
path = "customers.csv"

[takedown.notifiers.desk]
kind = "recording"
label = "the NTD desk"
"""


@pytest.fixture
def recording_kind() -> Iterator[None]:
    NOTIFIER_KINDS.register(RecordingNotifier)
    RecordingNotifier.sent.clear()
    yield
    NOTIFIER_KINDS.unregister(RecordingNotifier.KIND)


async def test_a_notifier_kind_registered_elsewhere_is_configured_and_used(
    tmp_path: Path, recording_kind: None
) -> None:
    (tmp_path / "customers.csv").write_text(
        "prefix,customer_id,contact\n198.51.100.0/28,cust-a,noc@cust-a.example\n",
        encoding="utf-8",
    )
    text = f"""
[agent]
state_dir = "{tmp_path / "state"}"

[takedown]
enabled = true
own_prefixes = ["198.51.100.0/24"]
# Never asked: the URL below has an address for a host.
resolvers = [{{ host = "127.0.0.1", port = 9 }}]
{DESK}"""
    settings = load_config(write(tmp_path, text))
    assert isinstance(settings.takedown.notifiers["desk"], RecordingNotifierConfig)
    store = SqliteStore(tmp_path / "edgeagent.sqlite3")
    tickets = open_ticket_store(settings.store, tmp_path)
    svc = TakedownService.from_settings(settings.takedown, store, tickets)
    try:
        await svc.refresh_customers()
        entry = Entry(
            Indicator.parse(Scope.URL, "http://198.51.100.10/listed.html"),
            Action.BLOCK,
            "decision:1",
        )
        out = await svc.on_entries([entry], dt.datetime.now(dt.UTC), "HL-1", "hotline")
        (ticket,) = out.tickets
        ((name, label, notice),) = RecordingNotifier.sent
        assert (name, label) == ("desk", "the NTD desk")
        assert notice.ticket_id == ticket.id
        assert notice.urls == ("http://198.51.100.10/listed.html",)
        assert notice.customer_contact == "noc@cust-a.example"
        delivered = [e for e in ticket.events if e.action == "notify"]
        assert [(dict(e.detail)["channel"], e.reason) for e in delivered] == [("desk", "delivered")]
    finally:
        svc.tickets.close()
        store.close()


# ------------------------------------------------------------- hold and jurisdictions

BASE = """
[takedown]
enabled = true
own_prefixes = ["198.51.100.0/24"]
resolvers = [{ host = "127.0.0.1", port = 53 }]
"""


def test_hold_for_defaults_to_law_enforcement_and_is_configurable(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, BASE)).takedown.hold_for == ("law-enforcement",)
    settings = load_config(write(tmp_path, BASE + 'hold_for = ["law-enforcement", "hotline"]\n'))
    assert settings.takedown.hold_for == ("law-enforcement", "hotline")
    assert load_config(write(tmp_path, BASE + "hold_for = []\n")).takedown.hold_for == ()
    (problem,) = problems(write(tmp_path, BASE + 'hold_for = ["police"]\n'))
    assert problem.path == "takedown.hold_for[0]"


def test_authorisation_rules_name_sources_or_jurisdictions(tmp_path: Path) -> None:
    text = BASE + 'require_authorisation_for = ["law-enforcement", "DE", "ES-CT"]\n'
    settings = load_config(write(tmp_path, text))
    assert settings.takedown.require_authorisation_for == ("law-enforcement", "DE", "ES-CT")
    (problem,) = problems(write(tmp_path, BASE + 'require_authorisation_for = ["de"]\n'))
    assert problem.path == "takedown.require_authorisation_for[0]"
    assert "jurisdiction" in problem.reason


def test_feeds_carry_jurisdiction_and_hold(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("bad.example\n", encoding="utf-8")
    feed = '[feeds.police]\nkind = "domain-list"\npath = "list.txt"\nsource = "law-enforcement"\n'
    settings = load_config(write(tmp_path, feed + 'jurisdiction = "BE"\nhold = false\n'))
    assert (settings.feeds["police"].jurisdiction, settings.feeds["police"].hold) == ("BE", False)
    (problem,) = problems(write(tmp_path, feed + 'jurisdiction = "Belgium"\n'))
    assert problem.path == "feeds.police.jurisdiction"


# ------------------------------------------------------------- on call, out of hours

ON_CALL = (
    DESK
    + """
[takedown.notifiers.police-desk]
kind = "recording"
label = "police liaison on call"
hosting_team = false

[takedown.on_call]
business_days = ["mon", "tue", "wed", "thu", "fri"]
business_hours = "08:00-18:00"
holidays = [2026-12-25]
notifiers = { law-enforcement = ["police-desk"] }
"""
)


def test_on_call_names_must_be_notifiers(tmp_path: Path) -> None:
    text = BASE + '[takedown.on_call]\nnotifiers = { hotline = ["nobody"] }\n'
    (problem,) = problems(write(tmp_path, text))
    assert problem.path == "takedown.on_call.notifiers.hotline[0]"
    (problem,) = problems(write(tmp_path, BASE + '[takedown.on_call]\nbusiness_hours = "9-5"\n'))
    assert problem.path == "takedown.on_call.business_hours"


async def test_escalations_go_on_call_out_of_hours_only(
    tmp_path: Path, recording_kind: None
) -> None:
    (tmp_path / "customers.csv").write_text(
        "prefix,customer_id,contact\n198.51.100.0/28,cust-a,noc@cust-a.example\n",
        encoding="utf-8",
    )
    settings = load_config(
        write(tmp_path, f'[agent]\ntime_zone = "Europe/Berlin"\n{BASE}{ON_CALL}')
    )
    store = SqliteStore(tmp_path / "edgeagent.sqlite3")
    tickets = open_ticket_store(settings.store, tmp_path)
    svc = TakedownService.from_settings(
        settings.takedown, store, tickets, time_zone=settings.agent.zone
    )
    saturday_night = dt.datetime(2026, 3, 7, 22, 0, tzinfo=dt.UTC)
    monday_noon = dt.datetime(2026, 3, 9, 11, 0, tzinfo=dt.UTC)
    try:
        await svc.refresh_customers()
        target = Indicator.parse(Scope.URL, "http://198.51.100.10/listed.html")
        out = await svc.on_entries(
            [Entry(target, Action.BLOCK, "decision:1")],
            saturday_night - dt.timedelta(hours=2),
            "POL-9",
            "law-enforcement",
            hold=True,
        )
        (ticket,) = out.tickets
        # The regular notice goes to the desk only: the on-call notifier takes escalations.
        assert [name for name, _, _ in RecordingNotifier.sent] == ["desk"]
        escalation = Job("escalation", ticket.id, ticket.deadline)
        for clock, expected in ((monday_noon, ["desk"]), (saturday_night, ["desk", "police-desk"])):
            RecordingNotifier.sent.clear()
            svc.clock = lambda clock=clock: clock
            await svc.run_job(escalation)
            assert [name for name, _, _ in RecordingNotifier.sent] == expected
        # A held case's reference reaches the hosting team only.
        by_name = {name: notice for name, _, notice in RecordingNotifier.sent}
        assert by_name["desk"].reference == "POL-9"
        assert by_name["police-desk"].reference == ""
        assert by_name["police-desk"].customer_contact == ""
    finally:
        svc.tickets.close()
        store.close()
