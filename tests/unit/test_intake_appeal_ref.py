"""The appeal link names the blocking entry by an opaque reference, end to end: the Squid
helper computes it from what it matched, the stop page carries it into its appeal link,
and the agent finds the entry again from it (and from nothing else)."""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from edgeagent.config import load_config
from edgeagent.intake.entryref import KEY_FILE_NAME, EntryRefs, is_ref, load_key
from edgeagent.intake.listener import entry_refs
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.proxy.enforcer import ProxyEnforcerConfig
from edgeagent.proxy.indexwriter import write_index
from edgeagent.proxy.squid_helper import Helper
from edgeagent.proxy.stoppage import StopPageSettings, StopPageSource, create_stop_page_app

KEY = bytes(range(32))


def _index(tmp_path: Path) -> Path:
    entries = (
        Entry(Indicator.parse(Scope.URL, "http://site.example/page?id=7"), Action.BLOCK, "iwf"),
        Entry(Indicator.parse(Scope.DOMAIN, "whole.example"), Action.BLOCK, "iwf"),
    )
    path = tmp_path / "index.bin"
    write_index(DesiredState(1, entries, ()), path)
    return path


def test_helper_answer_carries_the_reference_the_agent_resolves(tmp_path: Path) -> None:
    helper = Helper(_index(tmp_path), appeal_key=KEY)
    answer = helper.answer(b"1 http://SITE.example:80/page?id=7 GET").decode()
    assert answer.startswith("1 OK message=iwf.")
    ref = answer.rpartition(".")[2]
    assert is_ref(ref)
    assert "site" not in answer
    refs = EntryRefs(KEY)
    url = Indicator.parse(Scope.URL, "http://site.example/page?id=7")
    domain = Indicator.parse(Scope.DOMAIN, "whole.example")
    assert refs.find(ref, [domain, url]) == [url]
    sub = helper.answer(b"2 http://a.b.whole.example/x GET").decode()
    assert refs.find(sub.rpartition(".")[2], [domain, url]) == [domain]
    # Without the key, the answer is the label alone, as before.
    assert Helper(_index(tmp_path)).answer(b"1 http://site.example/page?id=7 GET") == (
        b"1 OK message=iwf"
    )


async def test_stop_page_puts_the_reference_in_the_appeal_link_only() -> None:
    settings = StopPageSettings(
        sources={"iwf": StopPageSource("the Example Hotline")},
        appeal_contact="https://report.isp.example/appeal",
    )
    hits: list[str] = []
    client = TestClient(TestServer(create_stop_page_app(settings, on_hit=hits.append)))
    await client.start_server()
    try:
        ref = "abcdefghijklmnopqrstuvwx"
        ok = await (await client.get(f"/blocked?source=iwf.{ref}")).text()
        bad = await (await client.get("/blocked?source=iwf.http://x.example/")).text()
    finally:
        await client.close()
    assert f'href="https://report.isp.example/appeal?ref={ref}"' in ok
    assert "the Example Hotline" in ok
    assert 'href="https://report.isp.example/appeal"' in bad
    assert "x.example" not in bad
    assert hits == ["iwf", "iwf"]


def test_key_file_is_made_once_and_kept_private(tmp_path: Path) -> None:
    key = load_key(tmp_path)
    assert load_key(tmp_path) == key
    assert len(key) == 32
    assert os.stat(tmp_path / KEY_FILE_NAME).st_mode & 0o777 == 0o600


def test_a_key_kept_in_the_state_directory_before_moves_beside_the_index(
    tmp_path: Path,
) -> None:
    state, shared = tmp_path / "state", tmp_path / "publish"  # shared: not made yet
    state.mkdir()
    earlier = load_key(state)
    assert load_key(shared, former=state) == earlier  # old references still resolve
    assert (shared / KEY_FILE_NAME).read_bytes() == earlier
    assert load_key(tmp_path / "publish", former=tmp_path / "none") == earlier


def test_the_agent_keeps_the_key_where_squids_helpers_read_it(tmp_path: Path) -> None:
    """Beside the proxy index (the setgid-proxy directory of the shipped unit), never in
    the 0700 state directory, which the helpers cannot enter."""
    shared = tmp_path / "publish" / "proxy"
    shared.mkdir(parents=True)
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[proxy]\nenabled = true\nindex_path = "{shared / "proxy-index.bin"}"\n'
    )
    settings = load_config(config)
    proxy = settings.sections(ProxyEnforcerConfig).proxy
    assert proxy.artefacts_dir(settings.agent.state_dir) == shared
    refs = entry_refs(settings)
    assert (shared / KEY_FILE_NAME).read_bytes() == load_key(shared)
    assert not (tmp_path / "state" / KEY_FILE_NAME).exists()
    indicator = Indicator.parse(Scope.URL, "http://listed.example/page.html")
    assert refs.of(indicator) == EntryRefs(load_key(shared)).of(indicator)
