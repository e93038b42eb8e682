"""What a reload changed and what of it needs a restart, key by key."""

from __future__ import annotations

from pathlib import Path

from edgeagent.config import Settings, load_config
from edgeagent.enforcement.base import owned_sections
from edgeagent.enforcement.kinds import ENFORCERS
from edgeagent.reloading import changed_keys, report, under

BASE = """
[agent]
state_dir = "state"
[api]
port = 18640
[feeds.police]
kind = "domain-list"
path = "domains.txt"
[rpz]
ttl = 60
[publishers.files]
kind = "zonefile"
directory = "zones"
"""


def load(tmp_path: Path, text: str, name: str) -> Settings:
    (tmp_path / "domains.txt").touch()
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_keys_are_named_down_to_the_field_or_table_entry(tmp_path: Path) -> None:
    old = load(tmp_path, BASE, "old.toml")
    new = load(
        tmp_path,
        BASE.replace("18640", "18641").replace("ttl = 60", "ttl = 30")
        + '[publishers.more]\nkind = "zonefile"\ndirectory = "more"\n'
        + '[[resolvers]]\nname = "r1"\nhost = "127.0.0.1"\n'
        + "[takedown]\nsla_minutes = 30\n",
        "new.toml",
    )
    assert changed_keys(old, new) == [
        "api.port",
        "takedown.sla_minutes",
        "rpz.ttl",
        "publishers.more",
        "resolvers",
    ]
    assert changed_keys(old, old) == []


def test_restart_keys_stay_reported_until_the_file_matches_the_process(tmp_path: Path) -> None:
    started = load(tmp_path, BASE, "started.toml")
    first = load(tmp_path, BASE.replace("18640", "18641"), "first.toml")
    second = load(
        tmp_path,
        BASE.replace("18640", "18641").replace('"domain-list"', '"domain-list"\nenabled = false'),
        "second.toml",
    )
    owned = owned_sections(ENFORCERS)
    one = report(1.0, started=started, old=started, new=first, owned=owned)
    assert (one.applied, one.needs_restart) == ((), ("api.port",))
    two = report(2.0, started=started, old=first, new=second, owned=owned)
    assert (two.applied, two.needs_restart) == (("feeds.police",), ("api.port",))
    back = report(3.0, started=started, old=second, new=started, owned=owned)
    assert back.needs_restart == ()
    assert back.to_dict() == {"at": 3.0, "applied": ["feeds.police"], "needs_restart": []}


def test_enforcers_report_their_own_keys(tmp_path: Path) -> None:
    started = load(tmp_path, BASE, "started.toml")
    new = load(tmp_path, BASE.replace("ttl = 60", "ttl = 30"), "new.toml")
    owned = owned_sections(ENFORCERS)
    assert set(owned) == {"rpz", "publishers", "resolvers", "proxy", "edge", "routes"}
    done = report(
        1.0,
        started=started,
        old=started,
        new=new,
        owned=owned,
        enforcers_applied=["rpz.ttl"],
    )
    assert (done.applied, done.needs_restart) == (("rpz.ttl",), ())
    assert under("publishers.x", owned)
    assert under("resolvers", owned)
    assert not under("rpzx.ttl", owned)
