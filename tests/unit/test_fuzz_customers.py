"""Fuzzing the takedown customer exports: CSV, JSON (array and lines) and RIPE RPSL.

Properties: an export either loads or raises :class:`ExportError` listing every bad line,
each with a line number and a reason; nothing else escapes; every assignment loaded is a
well-formed block (``first <= last``, in range for its family, validity ordered).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

from hypothesis import example, given
from hypothesis import strategies as st

from edgeagent.takedown.customers.base import Assignment, ExportError
from edgeagent.takedown.customers.csv import parse_csv
from edgeagent.takedown.customers.json import parse_json
from edgeagent.takedown.customers.ripe import parse_ripe
from tests.support.fuzzing import EXAMPLES, fuzz_settings, outcome

COLUMNS = ["prefix", "customer_id", "service_id", "contact", "valid_from", "valid_to"]

_prefixes = st.one_of(
    st.sampled_from(
        [
            "198.51.100.0/24",
            "198.51.100.7/24",
            "203.0.113.0 - 203.0.113.9",
            "203.0.113.9 - 203.0.113.0",
            "2001:db8::/32",
            "2001:db8::1 - 192.0.2.1",
            "192.0.2.1",
            "192.0.2.0/33",
            "0.0.0.0/0",
            "::/0",
            "192.0.2.0/-1",
            "fe80::1%eth0",
            "192.0.2.1 - ",
        ]
    ),
    st.ip_addresses().map(str),
    st.builds(lambda a, n: f"{a}/{n}", st.ip_addresses().map(str), st.integers(-2, 140)),
    st.text(max_size=20),
)
_times = st.one_of(
    st.just(""),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.builds(
        lambda d, h: d.isoformat() + f"{h:+03d}:00",
        st.datetimes(),
        st.integers(-23, 23),
    ),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday"]),
    st.text(max_size=12),
)
_idents = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,20}", fullmatch=True),
    st.sampled_from(["cust'; DROP TABLE tickets;--", "a" * 200, "noc@cust.example"]),
    st.text(max_size=20),
)
_cells = {
    "prefix": _prefixes,
    "customer_id": _idents,
    "service_id": _idents,
    "contact": _idents,
    "valid_from": _times,
    "valid_to": _times,
}
_rows = st.fixed_dictionaries({}, optional=_cells)


def _loaded_or_refused(parse: Callable[[str, str], list[Assignment]], text: str) -> None:
    got = outcome(lambda: parse("fuzz", text), ExportError)
    if isinstance(got, ExportError):
        assert got.problems
        for problem in got.problems:
            assert problem.reason
            assert problem.line >= 0
        return
    for a in got:
        assert a.version in (4, 6)
        assert 0 <= a.first <= a.last < 2 ** (32 if a.version == 4 else 128)
        if a.valid_from is not None and a.valid_to is not None:
            assert a.valid_from < a.valid_to
        assert a.customer_id


def _csv(rows: list[dict[str, str]], header: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@fuzz_settings(default=250, long=20_000)
@given(
    st.one_of(
        st.builds(_csv, st.lists(_rows, max_size=6), st.permutations(COLUMNS)),
        st.builds(
            _csv,
            st.lists(_rows, max_size=4),
            st.lists(st.sampled_from([*COLUMNS, "x"]), min_size=1, max_size=7, unique=True),
        ),
        st.text(max_size=80),
    )
)
@example("prefix,customer_id,valid_from\n192.0.2.0/24,c1,0001-01-01T00:00:00+01:00\n")
def test_csv_export(text: str) -> None:
    EXAMPLES.count("takedown.customers.csv")
    _loaded_or_refused(parse_csv, text)


_json_values = st.one_of(
    st.text(max_size=10), st.integers(), st.none(), st.lists(st.integers(), max_size=2)
)
_json_items = st.one_of(
    _rows,
    st.dictionaries(st.sampled_from([*COLUMNS, "extra"]), _json_values, max_size=7),
    _json_values,
)
_json_docs = st.one_of(
    st.lists(_json_items, max_size=6).map(json.dumps),
    st.lists(_json_items, max_size=6).map(lambda items: "\n".join(map(json.dumps, items))),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 5000).map(lambda n: "{}\n" + "[" * n),
    st.text(max_size=60),
)


@fuzz_settings(default=250, long=20_000)
@given(_json_docs)
@example("[" * 5000 + "]" * 5000)
@example('{"prefix": "192.0.2.0/24"}\n' + "[" * 5000)
def test_json_export(text: str) -> None:
    EXAMPLES.count("takedown.customers.json")
    _loaded_or_refused(parse_json, text)


_rpsl_lines = st.one_of(
    st.builds(lambda v: f"inetnum: {v}", _prefixes),
    st.builds(lambda v: f"inet6num: {v}", _prefixes),
    st.builds(lambda v: f"org: {v}", _idents),
    st.builds(lambda v: f"netname: {v}", _idents),
    st.builds(lambda v: f"abuse-mailbox: {v}", _idents),
    st.builds(lambda v: f"valid-from: {v}", _times),
    st.builds(lambda v: f"valid-to: {v}", _times),
    st.sampled_from(["", "% comment", "# comment", "+continued", " continued", "descr: x"]),
    st.text(max_size=20),
)


@fuzz_settings(default=250, long=20_000)
@given(st.lists(_rpsl_lines, max_size=14))
def test_ripe_export(lines: list[str]) -> None:
    EXAMPLES.count("takedown.customers.ripe")
    _loaded_or_refused(parse_ripe, "\n".join(lines))
