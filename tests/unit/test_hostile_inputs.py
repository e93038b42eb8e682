"""The table of hostile inputs (tests/data/hostile_inputs.toml), one test per row.

Each row names an input, where it is fed and what must happen (the data file's header
describes the columns). Where:

- ``decision``: ``POST /v1/decisions`` as an analyst, the input in body field ``field``
  (default ``target``, with ``scope``); accepted means ``201`` with the canonical
  ``target`` (and the decision ``status``), or the text stored as sent;
- ``lookup``: ``GET /v1/lookup?target=`` as an analyst;
- ``api``: a raw request (``method``, ``path``, body) as a supervisor: ``http`` status;
- ``feed``: one list (``kind``, ``format``) through its parser: the single item's
  reject reason, or the accepted canonical value (and ``scope``);
- ``config``: a TOML fragment after ``[agent] state_dir``: the problem at key ``key``;
- ``helper``: one Squid helper request line: the exact ``answer``;
- ``zone``: a name or URL blocked with ``action`` and compiled into the policy zone: its
  owner is there, or it is left out and counted (``reason`` is the counter).

A row with ``pending`` expects the behaviour another branch brings (named there); it is
a strict xfail until that branch is merged, then the marker must go.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from edgeagent.config import load_config
from edgeagent.errors import ConfigError, FeedError, InvalidTarget
from edgeagent.feeds import domainlist, hashedlist, urllist
from edgeagent.feeds.base import Accepted, FeedFormat, FeedKind, FeedSpec, Rejected
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.proxy.indexwriter import write_index
from edgeagent.proxy.squid_helper import Helper
from edgeagent.rpz.compiler import RpzSettings, StatsCounter, policy_zone_text
from tests.support.figures import Tally, recorded_at_module_end
from tests.support.full_api import FullApi, full_api
from tests.support.fuzzing import outcome

# One API (store, tokens, app) for the whole table: rows use distinct targets.
pytestmark = pytest.mark.asyncio(loop_scope="module")

TABLE = Path(__file__).resolve().parents[1] / "data" / "hostile_inputs.toml"
ROWS: list[dict[str, Any]] = tomllib.loads(TABLE.read_text(encoding="utf-8"))["row"]
# The table's over-long rows are sized for this origin (named in their notes).
ZONE = RpzSettings(
    zone="rpz.edgeagent.invalid",
    exception_zone="rpz-exceptions.edgeagent.invalid",
    proxy_ipv4="192.0.2.10",
    stop_page_host="stop.example",
    source_actions={"nxdomain": "nxdomain", "divert": "divert", "stop-page": "stop-page"},
)
HELPER_BLOCKS = [
    ("url", "http://mixed.site.test/gallery/listed.html"),
    ("domain", "whole.domain.test"),
    ("host", "h.site.test"),
]
# Tried, refused and accepted rows, in all and by class (var/reliability/hostile.json).
TABLE = Tally("hostile", "hostile-table")
BY_CLASS = Tally("hostile", "hostile-table-by-class")
hostile_figures = recorded_at_module_end(TABLE, BY_CLASS)
_PARSERS = {
    "url-list": urllist.parse,
    "domain-list": domainlist.parse,
    "hashed-url-list": hashedlist.parse,
}


@dataclass(frozen=True)
class Outcome:
    """What happened to one input: accepted (with its canonical value) or refused."""

    accepted: bool
    value: str = ""  # canonical value, stored text, or answer
    reason: str = ""  # why it was refused
    detail: str = ""  # anything else worth showing when the row fails (status, field)


def _input(row: dict[str, Any]) -> str:
    """The row's input: ``input``, or ``build`` (``[[text, times], ...]``) for big ones."""
    if "build" in row:
        return "".join(text * times for text, times in row["build"])
    return str(row["input"])


def _params() -> list[Any]:
    ids = [row["id"] for row in ROWS]
    assert len(ids) == len(set(ids)), "row ids must be unique"
    marks = []
    for row in ROWS:
        pending = row.get("pending")
        mark = [pytest.mark.xfail(strict=True, reason=pending)] if pending else []
        marks.append(pytest.param(row, id=str(row["id"]), marks=mark))
    return marks


# --------------------------------------------------------------------------- feeders


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def table_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FullApi]:
    # Lookups are rate-limited per token; the table's rows are not an abuse.
    directory = tmp_path_factory.mktemp("hostile-api")
    async with full_api(directory, lookup_rate_per_minute=100_000) as served:
        yield served


async def _decision(row: dict[str, Any], text: str, api: FullApi, tmp: Path) -> Outcome:
    field = row.get("field", "target")
    body: dict[str, Any] = {
        "target": f"{row['id']}.row.example",
        "scope": row.get("scope", "host"),
        "action": row.get("action", "block"),
        "reason": "hostile input table",
        "reference": "CASE-HOSTILE",
        "source": "hotline",
    }
    body[field] = text
    status, out = await api.call(
        "POST", "/v1/decisions", token=api.tokens["analyst"], data=_json(body)
    )
    if status != 201:
        err = out["error"]
        return Outcome(False, reason=err["message"], detail=f"{status} on {err['field']}")
    if field != "target":
        _, stored = await api.call("GET", f"/v1/decisions/{out['id']}", token=api.tokens["analyst"])
        return Outcome(True, stored[field], detail=out["status"])
    return Outcome(True, out["target"], detail=out["status"])


async def _lookup(row: dict[str, Any], text: str, api: FullApi, tmp: Path) -> Outcome:
    status, out = await api.call(
        "GET", "/v1/lookup", token=api.tokens["analyst"], params={"target": text}
    )
    if status != 200:
        return Outcome(False, reason=out["error"]["message"], detail=str(status))
    return Outcome(True, out["canonical"], detail=out["target_kind"])


async def _api(row: dict[str, Any], text: str, api: FullApi, tmp: Path) -> Outcome:
    if "items" in row:  # a filter must have a decision to miss
        made = await _decision({"id": row["id"]}, f"{row['id']}.row.example", api, tmp)
        assert made.accepted, made
    status, out = await api.call(
        row.get("method", "POST"),
        row.get("path", "/v1/decisions"),
        token=api.tokens["supervisor"],
        data=text.encode("utf-8", "surrogatepass"),
    )
    if status >= 400:
        err = out["error"]
        return Outcome(False, reason=err["message"], detail=f"{status} on {err['field']}")
    if "items" in row:
        assert len(out["items"]) == row["items"], out
    return Outcome(True, str(status), detail=str(status))


def _feed(row: dict[str, Any], text: str, api: FullApi, tmp: Path) -> Outcome:
    kind = row.get("kind", "url-list")
    spec = FeedSpec(
        name="hostile", kind=FeedKind(kind), format=FeedFormat(row.get("format", "lines"))
    )
    items = outcome(lambda: list(_PARSERS[kind](text.encode("utf-8"), spec)), FeedError)
    if isinstance(items, FeedError):
        return Outcome(False, reason=items.reason, detail="whole feed refused")
    assert isinstance(items, list)
    assert len(items) == 1, items  # one entry per row keeps the table readable
    item = items[0]
    if isinstance(item, Rejected):
        return Outcome(False, reason=item.reason)
    if isinstance(item, Accepted):
        return Outcome(True, item.indicator.value, detail=item.indicator.scope.value)
    return Outcome(True, item.hex, detail="url-hash")


def _config(row: dict[str, Any], text: str, api: FullApi, tmp: Path) -> Outcome:
    path = tmp / "edgeagent.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp / "state"}"\n{text}\n', encoding="utf-8")
    got = outcome(lambda: load_config(path), ConfigError)
    if not isinstance(got, ConfigError):
        return Outcome(True)
    at_key = [p.reason for p in got.problems if p.path == row["key"]]
    everything = "; ".join(str(p) for p in got.problems)
    return Outcome(False, reason=at_key[0] if at_key else "", detail=everything)


def _helper(row: dict[str, Any], text: str, api: FullApi, tmp: Path) -> Outcome:
    index = tmp / "proxy-index.bin"
    entries = [Entry(Indicator.parse(s, v), Action.BLOCK, "iwf") for s, v in HELPER_BLOCKS]
    write_index(DesiredState(1, tuple(sorted(entries, key=lambda e: e.indicator)), ()), index)
    helper = Helper(index, host_mode=row.get("mode") == "host")
    answer = helper.answer(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")
    # "Refused" here means the proxy refuses the request (OK); ERR lets it pass.
    return Outcome(answer.endswith("ERR"), answer)


def _zone(row: dict[str, Any], text: str, api: FullApi, tmp: Path) -> Outcome:
    scope = Scope(row.get("scope", "host"))
    ind = outcome(lambda: Indicator.parse(scope, text), InvalidTarget)
    if isinstance(ind, InvalidTarget):
        return Outcome(False, reason=ind.reason, detail="refused by canon")
    assert isinstance(ind, Indicator)
    counter = StatsCounter()
    entry = Entry(ind, Action.BLOCK, row.get("action", "nxdomain"))
    zone = "".join(policy_zone_text(DesiredState(1, (entry,), ()), ZONE, 1, counter))
    owners = {line.split(" ", 1)[0] for line in zone.splitlines()[3:]}
    owner = ind.host or ind.value
    if owner in owners:
        return Outcome(True, owner)
    counted = [k for k in ("refused_name", "not_enforceable_at_dns") if getattr(counter, k)]
    return Outcome(False, reason=",".join(counted), detail="left out of the zone")


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


_FEEDERS = {
    "decision": _decision,
    "lookup": _lookup,
    "api": _api,
    "feed": _feed,
    "config": _config,
    "helper": _helper,
    "zone": _zone,
}


# ------------------------------------------------------------------------------ the test


@pytest.mark.parametrize("row", _params())
async def test_hostile_input(row: dict[str, Any], table_api: FullApi, tmp_path: Path) -> None:
    feeder = _FEEDERS[row["where"]]
    text = _input(row)
    got = feeder(row, text, table_api, tmp_path)
    result = await got if not isinstance(got, Outcome) else got
    refused = "refused" if not result.accepted else "accepted"
    TABLE.add("tried")
    TABLE.add(refused)
    BY_CLASS.add(f"{row['class']}.tried")
    BY_CLASS.add(f"{row['class']}.{refused}")
    shown = f"{row['id']}: got {result}"
    expect = row["expect"]
    if expect == "answered":
        assert result.value == row["answer"], shown
    elif expect == "refused":
        assert not result.accepted, shown
        reasons = row["reason"] if isinstance(row["reason"], list) else [row["reason"]]
        assert any(r in result.reason for r in reasons), shown
        if "http" in row:
            assert result.detail.startswith(str(row["http"])), shown
        if "field" in row and row["where"] in ("decision", "api"):
            assert result.detail.endswith(f" on {row['field']}"), shown
    else:
        assert expect == "accepted", row
        assert result.accepted, shown
        for key in ("canonical", "stored", "http"):
            if key in row:
                wanted = text if row[key] == "<input>" else str(row[key])
                assert result.value == wanted, shown
        if "status" in row:
            assert result.detail == row["status"], shown
        if "scope" in row and row["where"] == "feed":
            assert result.detail == row["scope"], shown
    # A refusal never quotes the input (it may be a list entry).
    if not result.accepted and len(text) >= 8:
        assert text not in result.reason, shown
