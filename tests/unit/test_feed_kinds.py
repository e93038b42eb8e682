"""Feed kinds as plug-ins: each kind's table becomes a FeedSpec through the registry, old
kind names load with a warning, and a kind registered elsewhere is picked up."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

from edgeagent.config import ConfigError, load_config, summary
from edgeagent.configtypes import InputPath
from edgeagent.errors import ConfigProblem
from edgeagent.feeds.base import (
    BasicAuth,
    BearerAuth,
    ClientCert,
    Feed,
    FeedConfig,
    FeedFormat,
    FeedKind,
    FeedSpec,
    SyncOutcome,
    TsigKey,
)
from edgeagent.feeds.hashedlist import HashedUrlListFeedConfig
from edgeagent.feeds.kinds import FEED_KINDS
from edgeagent.feeds.rpz_axfr import RpzAxfrFeedConfig
from edgeagent.feeds.runner import feed_specs
from edgeagent.feeds.sync import StatusBoard, sync_feed
from edgeagent.guard import Guard, ProtectedNames, PublicSuffixes
from edgeagent.store import SqliteStore


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeagent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> set[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return {str(p) for p in info.value.problems}


# ------------------------------------------------------------------ one vocabulary


def test_feed_kinds_and_spec_kinds_are_one_vocabulary() -> None:
    assert set(FEED_KINDS.kinds()) == {k.value for k in FeedKind}
    assert FEED_KINDS.kinds() == (
        "url-list",
        "hashed-url-list",
        "domain-list",
        "local-file",
        "rpz-axfr",
    )


@pytest.mark.parametrize(
    ("old", "new", "table"),
    [
        ("hashed-list", "hashed-url-list", 'url = "https://feeds.example/hashes.txt"'),
        ("rpz", "rpz-axfr", 'server = "192.0.2.10"\nzone = "rpz.upstream.example"'),
    ],
)
def test_old_kind_names_load_with_a_warning_naming_the_key(
    tmp_path: Path, old: str, new: str, table: str
) -> None:
    settings = load_config(write(tmp_path, f'[feeds.up]\nkind = "{old}"\n{table}\n'))
    assert settings.feeds["up"].kind == new
    assert settings.warnings == (
        ConfigProblem("feeds.up.kind", f'"{old}" is an old name; write "{new}"'),
    )
    (spec,) = feed_specs(settings.feeds)
    assert spec.kind == FeedKind(new)
    assert f"  up               {new}" in "\n".join(summary(settings))


def test_current_kind_names_give_no_warning(tmp_path: Path) -> None:
    text = '[feeds.h]\nkind = "hashed-url-list"\nurl = "https://feeds.example/h.txt"\n'
    settings = load_config(write(tmp_path, text))
    assert isinstance(settings.feeds["h"], HashedUrlListFeedConfig)
    assert settings.warnings == ()


def test_an_old_name_is_still_checked_as_the_new_kind(tmp_path: Path) -> None:
    path = write(tmp_path, '[feeds.up]\nkind = "rpz"\nserver = "192.0.2.10"\n')
    assert problems_of(path) == {"feeds.up.zone: required key missing"}


# ------------------------------------------------------------- tables -> FeedSpec


def _secret(tmp_path: Path, name: str, value: str) -> None:
    (tmp_path / name).write_text(f"{value}\n", encoding="utf-8")


def test_each_kind_maps_its_table_and_reads_its_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _secret(tmp_path, "password", "fake-password")
    _secret(tmp_path, "tsig", "ZmFrZS10c2lnLXNlY3JldA==")
    _secret(tmp_path, "client.crt", "fake-cert")
    _secret(tmp_path, "client.key", "fake-key")
    (tmp_path / "feed.pub").write_bytes(b"\x01" * 32)
    monkeypatch.setenv("EDGEAGENT_TEST_TOKEN", "fake-token")
    settings = load_config(
        write(
            tmp_path,
            '[feeds.pages]\nkind = "url-list"\nurl = "https://feeds.example/u.jsonl"\n'
            'format = "jsonl"\ncron = "0 */12 * * *"\nmax_bytes = 4096\nretries = 1\n'
            'signature_url = "https://feeds.example/u.sig"\npublic_key_file = "feed.pub"\n'
            'auth = { kind = "basic", username = "isp", password_file = "password" }\n'
            '[feeds.hashes]\nkind = "hashed-url-list"\nurl = "https://feeds.example/h"\n'
            'auth = { kind = "bearer", token_env = "EDGEAGENT_TEST_TOKEN" }\n'
            '[feeds.police]\nkind = "domain-list"\nurl = "https://feeds.example/d"\n'
            'auth = { kind = "client-cert", cert_file = "client.crt", key_file = "client.key" }\n'
            '[feeds.dropped]\nkind = "domain-list"\npath = "later/domains.txt"\n'
            "interval_seconds = 60\nchange_floor = 7\n"
            '[feeds.court]\nkind = "local-file"\npath = "court.txt"\ncontent = "url-list"\n'
            'format = "csv"\nenabled = false\n'
            '[feeds.upstream]\nkind = "rpz-axfr"\nserver = "192.0.2.10"\nport = 5300\n'
            'zone = "rpz.upstream.example"\ntsig_key_name = "upstream.example"\n'
            'tsig_secret_file = "tsig"\ntimeout_seconds = 12.0\nuse_ixfr = false\n',
        )
    )
    specs = {s.name: s for s in feed_specs(settings.feeds)}
    assert list(specs) == ["court", "dropped", "hashes", "pages", "police", "upstream"]

    pages = specs["pages"]
    assert (pages.kind, pages.format, pages.url) == (
        FeedKind.URL_LIST,
        FeedFormat.JSONL,
        "https://feeds.example/u.jsonl",
    )
    assert (pages.interval, pages.cron, pages.max_bytes, pages.retries) == (
        None,
        "0 */12 * * *",
        4096,
        1,
    )
    assert pages.auth == BasicAuth("isp", "fake-password")
    assert (pages.signature_url, pages.public_key) == ("https://feeds.example/u.sig", b"\1" * 32)
    assert specs["hashes"].kind is FeedKind.HASHED_URL_LIST
    assert specs["hashes"].auth == BearerAuth("fake-token")
    police = specs["police"]
    assert (police.kind, police.auth) == (FeedKind.DOMAIN_LIST, None)
    assert police.client_cert == ClientCert(tmp_path / "client.crt", tmp_path / "client.key")

    # A list kind configured with a path is read as a local file of that content.
    dropped = specs["dropped"]
    assert (dropped.kind, dropped.content) == (FeedKind.LOCAL_FILE, FeedKind.DOMAIN_LIST)
    assert (dropped.path, dropped.url) == (tmp_path / "later" / "domains.txt", "")
    assert (dropped.interval, dropped.limit_floor) == (60.0, 7)
    court = specs["court"]
    assert (court.kind, court.content, court.format) == (
        FeedKind.LOCAL_FILE,
        FeedKind.URL_LIST,
        FeedFormat.CSV,
    )
    assert (court.path, court.enabled, court.interval) == (tmp_path / "court.txt", False, 3600.0)

    upstream = specs["upstream"]
    assert isinstance(settings.feeds["upstream"], RpzAxfrFeedConfig)
    assert (upstream.kind, upstream.server, upstream.port, upstream.zone) == (
        FeedKind.RPZ_AXFR,
        "192.0.2.10",
        5300,
        "rpz.upstream.example",
    )
    assert upstream.tsig == TsigKey("upstream.example", "ZmFrZS10c2lnLXNlY3JldA==")
    assert (upstream.deadline, upstream.ixfr) == (12.0, False)

    lines = "\n".join(summary(settings))
    assert "fake" not in lines
    for name, origin in (("pages", "http"), ("dropped", "file"), ("upstream", "axfr")):
        assert f"  {name:<16} {settings.feeds[name].kind:<16} {origin:<5}" in lines


def test_a_secret_that_vanished_after_checking_is_a_config_error(tmp_path: Path) -> None:
    _secret(tmp_path, "password", "fake-password")
    settings = load_config(
        write(
            tmp_path,
            '[feeds.pages]\nkind = "url-list"\nurl = "https://feeds.example/u"\n'
            'auth = { kind = "basic", username = "isp", password_file = "password" }\n',
        )
    )
    (tmp_path / "password").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        feed_specs(settings.feeds)
    assert info.value.problems[0].reason == "secret is empty"


# --------------------------------------------------------- a kind from elsewhere


class WatchListConfig(FeedConfig):
    """Domains an operator drops into a directory as ``domains.txt``."""

    kind: Literal["test-watch-list"]
    directory: InputPath


class WatchListFeed(Feed[WatchListConfig]):
    KIND = "test-watch-list"
    Config = WatchListConfig

    @classmethod
    def from_config(cls, name: str, config: WatchListConfig) -> FeedSpec:
        return replace(
            config.common_spec(name, FeedKind.LOCAL_FILE),
            path=config.directory / "domains.txt",
            content=FeedKind.DOMAIN_LIST,
        )


@pytest.fixture
def watch_list() -> Iterator[None]:
    FEED_KINDS.register(WatchListFeed)
    yield
    FEED_KINDS.unregister(WatchListFeed.KIND)


@pytest.mark.usefixtures("watch_list")
async def test_a_registered_kind_is_loaded_built_and_synced(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "domains.txt").write_text("watched.example\n", encoding="utf-8")
    settings = load_config(
        write(
            tmp_path,
            '[feeds.watch]\nkind = "test-watch-list"\ndirectory = "drop"\n'
            'source = "internal"\ninterval_seconds = 30\n'
            '[feeds.police]\nkind = "domain-list"\npath = "police.txt"\n',
        )
    )
    config = settings.feeds["watch"]
    assert isinstance(config, WatchListConfig)
    assert FEED_KINDS.plugin(config) is WatchListFeed
    spec = {s.name: s for s in feed_specs(settings.feeds)}["watch"]
    assert (spec.path, spec.interval) == (tmp_path / "drop" / "domains.txt", 30.0)
    line = "  watch            test-watch-list  file  every 30s, internal, action nxdomain"
    assert line in summary(settings)

    guard = Guard(PublicSuffixes.load(), ProtectedNames([]))
    store = SqliteStore(tmp_path / "store.db")
    try:
        result = await sync_feed(spec, store, guard, board=StatusBoard())
    finally:
        store.close()
    assert (result.outcome, result.entries) == (SyncOutcome.LIVE, 1)


@pytest.mark.usefixtures("watch_list")
def test_error_paths_name_the_key_with_a_registered_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[feeds.x]\nkind = "url-list"\nurl = "ftp://feeds.example/x"\n'
        '[feeds.w]\nkind = "test-watch-list"\ndirectory = "gone"\ninterval_seconds = 5\n'
        '[feeds.z]\nkind = "url-regex"\n'
        "[feeds.n]\nurl = 3\n",
    )
    assert problems_of(path) == {
        "feeds.x.url: not a valid URL: must start with http:// or https://",
        f"feeds.w.directory: path {tmp_path}/gone does not exist",
        "feeds.w.interval_seconds: must be at least 10",
        "feeds.z.kind: unknown kind; allowed: url-list, hashed-url-list, domain-list, "
        "local-file, rpz-axfr, test-watch-list",
        "feeds.n.kind: required key missing",
    }


def test_an_unregistered_kind_is_unknown_again(tmp_path: Path) -> None:
    path = write(tmp_path, '[feeds.w]\nkind = "test-watch-list"\ndirectory = "."\n')
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems.pop().startswith("feeds.w.kind: unknown kind; allowed: url-list,")


def test_csv_and_jsonl_are_refused_for_lists_read_one_entry_per_line(tmp_path: Path) -> None:
    # Only url-list has column formats; a domain or hash list asked for csv used to be
    # read as plain lines (a header row and every "name,category" line refused one by one).
    path = write(
        tmp_path,
        '[feeds.d]\nkind = "domain-list"\nurl = "https://feeds.example/d"\nformat = "csv"\n'
        '[feeds.h]\nkind = "hashed-url-list"\nurl = "https://feeds.example/h"\n'
        'format = "jsonl"\n'
        '[feeds.l]\nkind = "local-file"\npath = "court.txt"\ncontent = "domain-list"\n'
        'format = "csv"\n'
        '[feeds.u]\nkind = "local-file"\npath = "court.csv"\ncontent = "url-list"\n'
        'format = "csv"\n'
        '[feeds.p]\nkind = "url-list"\nurl = "https://feeds.example/p"\nformat = "csv"\n',
    )
    lines_only = 'is read one entry per line: "lines" only (csv and jsonl are url-list formats)'
    assert problems_of(path) == {
        f"feeds.d.format: a domain-list {lines_only}",
        f"feeds.h.format: a hashed-url-list {lines_only}",
        f"feeds.l.format: a domain-list {lines_only}",
    }
