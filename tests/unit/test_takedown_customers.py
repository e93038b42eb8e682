"""Own space, customer exports (CSV, JSON, RIPE), time-ranged lookup, overlaps, directory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeagent.takedown.customers.base import ExportError
from edgeagent.takedown.customers.csv import CsvExport, parse_csv
from edgeagent.takedown.customers.directory import (
    AssignmentIndex,
    CustomerDirectory,
    find_overlaps,
)
from edgeagent.takedown.customers.json import parse_json
from edgeagent.takedown.customers.ripe import RipeExport, parse_ripe
from edgeagent.takedown.space import OwnSpace

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 1, tzinfo=UTC)

CSV_OK = """prefix,customer_id,service_id,contact,valid_from,valid_to
198.51.100.0/28,cust-a,srv-1,noc@a.example,2025-01-01T00:00:00Z,2026-03-01T00:00:00Z
198.51.100.0/28,cust-b,srv-2,noc@b.example,2026-03-01T00:00:00Z,
198.51.100.16 - 198.51.100.47,cust-c,srv-3,noc@c.example,,
2001:db8:1::/48,cust-d,srv-4,noc@d.example,,
"""


def test_own_space_membership() -> None:
    own = OwnSpace(["198.51.100.0/24", "2001:db8::/32"])
    assert "198.51.100.10" in own
    assert "2001:db8::1" in own
    assert "203.0.113.50" not in own
    assert "not-an-address" not in own
    assert own.ipset.size == 256 + 2**96


def test_csv_time_ranged_lookup_picks_the_customer_at_notice_time() -> None:
    idx = AssignmentIndex(parse_csv("t", CSV_OK))
    a = idx.lookup("198.51.100.10", T0)
    b = idx.lookup("198.51.100.10", T1)
    assert a is not None
    assert a.customer_id == "cust-a"
    assert a.origin == "t:2"
    assert b is not None
    assert b.customer_id == "cust-b"
    c = idx.lookup("198.51.100.40", T1)
    assert c is not None
    assert c.customer_id == "cust-c"
    assert idx.lookup("198.51.100.48", T1) is None
    d = idx.lookup("2001:db8:1:ffff::9", T1)
    assert d is not None
    assert d.service_id == "srv-4"


def test_more_specific_assignment_wins() -> None:
    text = "prefix,customer_id\n198.51.100.0/24,reseller\n198.51.100.64/26,end-customer\n"
    idx = AssignmentIndex(parse_csv("t", text))
    hit = idx.lookup("198.51.100.70", T1)
    assert hit is not None
    assert hit.customer_id == "end-customer"
    other = idx.lookup("198.51.100.7", T1)
    assert other is not None
    assert other.customer_id == "reseller"


def test_malformed_csv_lists_every_bad_line() -> None:
    text = (
        "prefix,customer_id,service_id,contact,valid_from,valid_to\n"
        "198.51.100.0/28,cust-a,srv,noc@a.example,,\n"
        "198.51.100.1/28,cust-b,srv,noc@b.example,,\n"  # host bits set
        "not-a-prefix,cust-c,,,,\n"
        "198.51.100.32/28,,,,,\n"  # no customer
        "198.51.100.48/28,cust-e,,,yesterday,\n"
        "198.51.100.64/28,cust-f,,,2026-02-01,2026-01-01\n"
    )
    with pytest.raises(ExportError) as err:
        parse_csv("bad", text)
    lines = [p.line for p in err.value.problems]
    assert lines == [3, 4, 5, 6, 7]
    reasons = " ".join(p.reason for p in err.value.problems)
    assert "host bits" in reasons
    assert "customer_id is empty" in reasons
    assert "valid_from" in reasons
    assert "valid_to is not after" in reasons
    assert "line 3" in str(err.value)
    # The message names lines and columns, never the offending values.
    assert "not-a-prefix" not in str(err.value)


def test_csv_without_required_header_is_rejected() -> None:
    with pytest.raises(ExportError) as err:
        parse_csv("h", "net,owner\n198.51.100.0/24,x\n")
    assert err.value.problems[0].line == 1


def test_json_array_and_json_lines() -> None:
    arr = '[{"prefix": "203.0.113.0/25", "customer_id": "j1", "contact": "x@j.example"}]'
    assert parse_json("j", arr)[0].customer_id == "j1"
    lines = (
        '{"prefix": "203.0.113.0/25", "customer_id": "j1"}\n'
        "\n"
        '{"prefix": "203.0.113.128/25", "customer_id": "j2"\n'
        '{"prefix": 5, "customer_id": "j3"}\n'
    )
    with pytest.raises(ExportError) as err:
        parse_json("jl", lines)
    assert [(p.line, p.reason) for p in err.value.problems] == [
        (3, "malformed JSON"),
        (4, "prefix must be text"),
    ]


def test_ripe_inetnum_and_inet6num() -> None:
    text = """% comment
inetnum:        198.51.100.0 - 198.51.100.127
netname:        HOSTING-A
org:            ORG-HA1
abuse-mailbox:  abuse@a.example
valid-from:     2025-01-01

inet6num:       2001:db8:5::/48
netname:        HOSTING-B
e-mail:         noc@b.example

person:         Somebody
address:        nowhere
"""
    items = parse_ripe("ripe", text)
    assert [(a.customer_id, a.service_id, a.contact) for a in items] == [
        ("ORG-HA1", "HOSTING-A", "abuse@a.example"),
        ("HOSTING-B", "HOSTING-B", "noc@b.example"),
    ]
    assert items[0].origin == "ripe:2"
    assert items[1].origin == "ripe:8"
    with pytest.raises(ExportError) as err:
        parse_ripe("ripe", "inetnum: 198.51.100.9 - 198.51.100.1\nnetname: X\n\ngarbage line\n")
    assert [p.line for p in err.value.problems] == [1, 4]


def test_overlapping_assignments_are_reported() -> None:
    text = (
        "prefix,customer_id,valid_from,valid_to\n"
        "198.51.100.0/24,a,2025-01-01,2026-01-01\n"
        "198.51.100.0/25,b,2025-06-01,\n"  # overlaps a in space and time
        "198.51.100.0/24,c,2026-01-01,\n"  # same space as a, but starts when a ends
        "203.0.113.0/24,d,,\n"
    )
    items = parse_csv("o", text)
    found = {(o.a.customer_id, o.b.customer_id) for o in find_overlaps(items)}
    assert found == {("a", "b"), ("c", "b")}


async def test_directory_keeps_previous_data_when_an_export_turns_bad(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(CSV_OK, encoding="utf-8")
    ripe = tmp_path / "ripe.db"
    ripe.write_text("inet6num: 2001:db8:9::/48\nnetname: R9\n", encoding="utf-8")
    reg = CustomerDirectory([CsvExport(path, "crm"), RipeExport(ripe, "ripe")])
    first = await reg.refresh()
    assert first.loaded == {"crm": 4, "ripe": 1}
    assert not first.failed
    path.write_text(CSV_OK + "garbage,,\n", encoding="utf-8")
    second = await reg.refresh()
    assert "crm" in second.failed
    assert second.failed["crm"].problems[0].line == 6
    hit = reg.lookup("198.51.100.10", T1)
    assert hit is not None
    assert hit.customer_id == "cust-b"
    path.write_text(CSV_OK.replace("cust-b", "cust-z"), encoding="utf-8")
    await reg.refresh()
    again = reg.lookup("198.51.100.10", T1)
    assert again is not None
    assert again.customer_id == "cust-z"


async def test_unreadable_export_is_a_reported_failure(tmp_path: Path) -> None:
    reg = CustomerDirectory([CsvExport(tmp_path / "missing.csv", "crm")])
    rep = await reg.refresh()
    assert "cannot read" in str(rep.failed["crm"])
