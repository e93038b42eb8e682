"""Config loading: the example and the defaults load; every mistake is named at once."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from edgeagent import config
from edgeagent.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    Settings,
    config_path_from_env,
    default_settings,
    load_config,
    summary,
)
from edgeagent.configtypes import read_secret
from edgeagent.errors import ConfigProblem, StoreError
from edgeagent.feeds.base import BasicAuthConfig, BearerAuthConfig
from edgeagent.feeds.hashedlist import HashedUrlListFeedConfig
from edgeagent.feeds.urllist import UrlListFeedConfig
from edgeagent.model import NoticeSource
from edgeagent.rpz.publishers.bind_update import BindUpdateConfig
from edgeagent.store.postgresql.store import PostgresStoreConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "edgeagent.example.toml"
FIXTURES = REPO / "tests" / "fixtures" / "config"
PROTECTED = tuple(sorted((REPO / "blocklists" / "protected").glob("*.txt")))


def problems_of(path: Path) -> set[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    return {str(p) for p in info.value.problems}


def write(tmp_path: Path, text: str, name: str = "edgeagent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ happy


def test_example_loads_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    settings = load_config(EXAMPLE)
    assert set(settings.feeds) >= {"hotline-sample", "police-sample"}
    hotline = settings.feeds["hotline-sample"]
    assert hotline.kind == "url-list"
    assert hotline.format == "csv"
    assert getattr(hotline, "path", None) == REPO / "blocklists/samples/hotline-urls.csv"
    assert settings.guard.protected_lists == PROTECTED
    assert settings.publishers["local-zonefile"].kind == "zonefile"
    lines = summary(settings)
    assert any("hotline-sample" in line and "url-list" in line for line in lines)
    assert len(lines) < 40  # one screen


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    undocumented = []
    for model in _models(config.settings_model()):  # with every registered kind's model
        if issubclass(model, Settings):
            continue  # its fields are the [sections]
        for key in model.model_fields:
            as_key = rf"(?m)^\s*#?.*\b{re.escape(key)}\s*="
            as_table = rf"(?m)^\s*#?\s*\[\[?[a-z.]+\.{re.escape(key)}\]"
            if not (re.search(as_key, text) or re.search(as_table, text)):
                undocumented.append(f"{model.__name__}.{key}")
    assert undocumented == []


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from ``root`` through its field annotations."""
    found: list[type[BaseModel]] = []
    todo: list[object] = [root]
    while todo:
        item = todo.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item in found:
                continue
            found.append(item)
            todo.extend(f.annotation for f in item.model_fields.values())
        else:
            todo.extend(typing.get_args(item))
    return found


def test_embedded_defaults(tmp_path: Path) -> None:
    settings = default_settings(tmp_path / "state")
    assert settings.store_path == tmp_path / "state" / "edgeagent.sqlite3"
    assert (settings.api.host, settings.api.port) == ("127.0.0.1", 8640)
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9640)
    kinds = {name: feed.kind for name, feed in settings.feeds.items()}
    assert kinds == {"hotline-sample": "url-list", "police-sample": "domain-list"}
    samples = REPO / "blocklists" / "samples"
    assert getattr(settings.feeds["hotline-sample"], "path", None) == samples / "hotline-urls.csv"
    assert getattr(settings.feeds["police-sample"], "path", None) == samples / "police-domains.txt"
    assert settings.guard.protected_lists == PROTECTED
    assert settings.feed_action("police-sample") == "nxdomain"


def test_load_config_none_gives_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEAGENT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert load_config(None) == default_settings(tmp_path)


def test_state_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("EDGEAGENT_STATE_DIR", raising=False)
    assert default_settings().agent.state_dir == tmp_path / "var" / "edgeagent"
    monkeypatch.setenv("EDGEAGENT_STATE_DIR", "/srv/edgeagent")
    assert default_settings().agent.state_dir == Path("/srv/edgeagent")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edgeagent:/var/lib/other")
    assert default_settings().agent.state_dir == Path("/var/lib/edgeagent")


def test_protected_lists_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "one.txt").write_text("a.example\n", encoding="utf-8")
    ok = load_config(write(tmp_path, '[guard]\nprotected_lists = ["one.txt"]\n', "ok.toml"))
    assert ok.guard.protected_lists == (tmp_path / "one.txt",)
    bad = write(tmp_path, '[guard]\nprotected_lists = ["empty", "gone.txt"]\n')
    assert problems_of(bad) == {
        f"guard.protected_lists[1]: path {tmp_path}/gone.txt does not exist"
    }
    bad = write(tmp_path, '[guard]\nprotected_lists = ["empty"]\n')
    assert problems_of(bad) == {
        f"guard.protected_lists: directory {tmp_path}/empty holds no *.txt list"
    }


def test_config_path_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEAGENT_CONFIG", raising=False)
    assert config_path_from_env() == DEFAULT_CONFIG_PATH == Path("/etc/edgeagent/edgeagent.toml")
    monkeypatch.setenv("EDGEAGENT_CONFIG", "/srv/agent.toml")
    assert config_path_from_env() == Path("/srv/agent.toml")


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = default_settings(tmp_path)
    with pytest.raises(ValidationError):
        settings.api.port = 1  # type: ignore[misc]
    assert isinstance(settings.routes.ports, tuple)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "b.txt").write_text("b.example\n", encoding="utf-8")
    (tmp_path / "lists" / "a.txt").write_text("a.example\n", encoding="utf-8")
    (tmp_path / "lists" / "README.md").write_text("not a list\n", encoding="utf-8")
    path = write(
        tmp_path,
        '[agent]\nstate_dir = "state"\n'
        '[guard]\nprotected_lists = ["lists"]\n'
        '[feeds.court]\nkind = "local-file"\npath = "lists/court.txt"\ncontent = "url-list"\n',
    )
    settings = load_config(path)
    assert settings.agent.state_dir == tmp_path / "state"
    assert settings.store_path == tmp_path / "state" / "edgeagent.sqlite3"
    assert settings.guard.protected_lists == (tmp_path / "lists/a.txt", tmp_path / "lists/b.txt")
    assert getattr(settings.feeds["court"], "path", None) == tmp_path / "lists" / "court.txt"


FULL = """
[api]
tls_cert_file = "tls/api.crt"
tls_key_file = "secrets/api.key"
client_ca_file = "tls/ca.crt"
require_client_cert = true

[feeds.iwf]
kind = "url-list"
url = "https://feeds.example/urls.jsonl"
format = "jsonl"
action = "stop-page"
ca_file = "tls/ca.crt"
signature_url = "https://feeds.example/urls.jsonl.sig"
public_key_file = "tls/feed.pub"
auth = { kind = "basic", username = "isp", password_file = "secrets/feed-password" }

[feeds.hashes]
kind = "hashed-url-list"
url = "https://feeds.example/hashes.txt"
auth = { kind = "bearer", token_env = "EDGEAGENT_TEST_TOKEN" }

[feeds.police]
kind = "domain-list"
url = "https://feeds.example/domains.txt"
action = "divert"
cron = "0 */12 * * *"
auth = { kind = "client-cert", cert_file = "tls/client.crt", key_file = "secrets/client.key" }

[feeds.upstream]
kind = "rpz-axfr"
server = "192.0.2.10"
zone = "rpz.upstream.example"
tsig_key_name = "upstream.example"
tsig_secret_file = "secrets/tsig"

[rpz]
stop_page_host = "stop.isp.example"
proxy_ipv4 = "192.0.2.80"
proxy_ipv6 = "2001:db8::80"

[publishers.primary]
kind = "bind-update"
server = "127.0.0.1"
port = 5300
tsig_key_name = "edgeagent-update.example"
tsig_secret_env = "EDGEAGENT_TEST_TOKEN"

[publishers.unbound]
kind = "http-notify"
host = "::1"
port = 0
notify = [{ host = "127.0.0.1", port = 5301 }]

[[resolvers]]
name = "bind-1"
host = "127.0.0.1"
port = 5302
kind = "bind"

[proxy]
enabled = true
proxies = [{ host = "127.0.0.1", port = 3128 }]

[routes]
enabled = true
proxy_next_hop = "192.0.2.80"
ports = [80, 8080]
resolvers = [{ host = "192.0.2.53" }]

[takedown]
enabled = true
own_prefixes = ["203.0.113.0/24", "2001:db8:100::/48"]
sla_minutes_by_source = { hotline = 60, law-enforcement = 30 }
require_authorisation_for = ["law-enforcement"]

[[takedown.customers]]
kind = "csv"
path = "customers.csv"

[[takedown.customers]]
kind = "http"
url = "https://ipam.isp.example/assignments"
token_file = "secrets/ipam-token"

[takedown.smtp]
host = "127.0.0.1"
port = 2525
username = "edgeagent"
password_file = "secrets/smtp"
sender = "edgeagent@isp.example"
recipients = ["abuse@isp.example"]

[takedown.webhook]
url = "http://127.0.0.1:8099/hook"
secret_file = "secrets/webhook"
"""

FULL_FILES = (
    "tls/api.crt",
    "tls/ca.crt",
    "tls/feed.pub",
    "tls/client.crt",
    "secrets/api.key",
    "secrets/feed-password",
    "secrets/client.key",
    "secrets/tsig",
    "secrets/ipam-token",
    "secrets/smtp",
    "secrets/webhook",
    "customers.csv",
)


def make_full(tmp_path: Path) -> Path:
    for name in FULL_FILES:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("fake-test-value\n", encoding="utf-8")
    return write(tmp_path, FULL)


def test_every_feature_with_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEAGENT_TEST_TOKEN", "fake-token")
    settings = load_config(make_full(tmp_path))
    iwf = settings.feeds["iwf"]
    assert isinstance(iwf, UrlListFeedConfig)
    assert isinstance(iwf.auth, BasicAuthConfig)
    assert read_secret(iwf.auth.password_file, iwf.auth.password_env) == "fake-test-value"
    hashes = settings.feeds["hashes"]
    assert isinstance(hashes, HashedUrlListFeedConfig)
    assert isinstance(hashes.auth, BearerAuthConfig)
    assert read_secret(hashes.auth.token_file, hashes.auth.token_env) == "fake-token"
    assert settings.feeds["police"].schedule_interval is None
    assert settings.feed_action("police") == "divert"
    primary = settings.publishers["primary"]
    assert isinstance(primary, BindUpdateConfig)
    assert primary.port == 5300
    assert settings.takedown.sla_minutes_by_source[NoticeSource.LAW_ENFORCEMENT] == 30
    text = "\n".join(summary(settings))
    assert "fake" not in text  # no secret in the summary
    assert "TLS, client certs required" in text


def test_secrets_missing_are_reported_together(tmp_path: Path) -> None:
    path = make_full(tmp_path)
    for name in ("secrets/tsig", "secrets/webhook", "tls/feed.pub"):
        (tmp_path / name).unlink()
    problems = problems_of(path)  # EDGEAGENT_TEST_TOKEN unset as well
    assert problems == {
        f"feeds.upstream.tsig_secret_file: secret file {tmp_path}/secrets/tsig does not exist",
        f"takedown.webhook.secret_file: secret file {tmp_path}/secrets/webhook does not exist",
        f"feeds.iwf.public_key_file: file {tmp_path}/tls/feed.pub does not exist",
        "feeds.hashes.auth.token_env: environment variable EDGEAGENT_TEST_TOKEN is not set",
        "publishers.primary.tsig_secret_env: environment variable EDGEAGENT_TEST_TOKEN is not set",
    }


# ------------------------------------------------------------------------------ mistakes


def expectations(path: Path) -> set[str]:
    found = re.findall(r"(?m)^# expect: (.+)$", path.read_text(encoding="utf-8"))
    return {line.replace("{dir}", str(path.parent)) for line in found}


@pytest.mark.parametrize(
    "fixture",
    sorted(p for p in FIXTURES.glob("*.toml") if "syntax" not in p.name),
    ids=lambda p: p.stem,
)
def test_bad_config_fixture(monkeypatch: pytest.MonkeyPatch, fixture: Path) -> None:
    monkeypatch.delenv("EDGEAGENT_TEST_SURELY_UNSET", raising=False)
    expected = expectations(fixture)
    assert len(expected) >= 3
    assert problems_of(fixture) == expected


def test_three_and_four_mistakes_name_every_key() -> None:
    three = {p.split(":")[0] for p in problems_of(FIXTURES / "three-mistakes.toml")}
    assert three == {"api.listen", "feeds.hotline.interval_seconds", "feeds.police.url"}
    four = {p.split(":")[0] for p in problems_of(FIXTURES / "four-mistakes.toml")}
    assert four == {
        "metrics.colour",
        "guard.change_floor",
        "takedown.webhook.url",
        "feeds.hotline.auth.token_file",
    }


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(FIXTURES / "syntax-error.toml")
    (problem,) = info.value.problems
    assert problem.path == ""
    assert problem.reason.startswith("TOML syntax error")
    assert "line 5" in problem.reason
    assert "column" in problem.reason


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.problems == (
        ConfigProblem("", "cannot read file: No such file or directory"),
    )
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[agent]\nlog_level = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "not UTF-8" in info.value.problems[0].reason


def test_reasons_never_echo_values(tmp_path: Path) -> None:
    secretish = "s3cr3t-token-value"
    path = write(
        tmp_path,
        f'[feeds.a]\nkind = "url-list"\nurl = "https://isp:{secretish}@feeds.example/x"\n'
        f'[feeds.b]\nkind = "url-list"\nurl = "ftp://{secretish}.example/x"\n'
        f'[api]\nport = "{secretish}"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 3
    assert secretish not in str(info.value)
    assert "URL must not contain a user name or password (use auth)" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[feeds.a]\nkind = "domain-list"\npath = "x"\n'
            'interval_seconds = 60\ncron = "* * * * *"',
            ConfigProblem("feeds.a", "set interval_seconds or cron, not both"),
        ),
        (
            '[feeds.a]\nkind = "domain-list"\ncron = "61 * * * *"\npath = "x"',
            ConfigProblem(
                "feeds.a.cron",
                "not a valid cron expression: Error validating expression '61': "
                "the last value (61) is higher than the maximum value (59)",
            ),
        ),
        (
            '[feeds.a]\nkind = "domain-list"',
            ConfigProblem("feeds.a", "set url or path (exactly one)"),
        ),
        (
            '[feeds.a]\nkind = "domain-list"\npath = "x"\ndigest_url = "https://feeds.example/d"',
            ConfigProblem("feeds.a", "digest_url only apply to a feed with url"),
        ),
        (
            '[feeds.a]\nkind = "domain-list"\npath = "x"\naction = "stop-page"',
            ConfigProblem("feeds.a.action", "stop-page needs rpz.stop_page_host"),
        ),
        (
            '[feeds.a]\nkind = "domain-list"\npath = "x"\naction = "divert"',
            ConfigProblem("feeds.a.action", "divert needs rpz.proxy_ipv4/proxy_ipv6"),
        ),
        (
            '[rpz]\ndefault_action = "stop-page"',
            ConfigProblem("rpz.stop_page_host", "required by default_action"),
        ),
        (
            '[[resolvers]]\nname = "r"\nhost = "192.0.2.1"\n'
            '[[resolvers]]\nname = "r"\nhost = "192.0.2.2"',
            ConfigProblem("resolvers[1].name", "duplicate resolver name"),
        ),
        (
            '[api]\ntls_cert_file = "/etc/hostname"',
            ConfigProblem("api", "set both tls_cert_file and tls_key_file, or neither"),
        ),
        (
            "[takedown]\nenabled = true",
            ConfigProblem("takedown", "enabled takedown needs own_prefixes"),
        ),
        (
            '[takedown.smtp]\nhost = "127.0.0.1"\nsender = "a@isp.example"\nrecipients = []',
            ConfigProblem("takedown.smtp.recipients", "must have at least 1 item(s)"),
        ),
        (
            "[proxy]\ncanary_url = 5",
            ConfigProblem("proxy.canary_url", "expected a string, got integer"),
        ),
        (
            '[store]\nbackend = "mysql"',
            ConfigProblem("store.backend", "unknown backend; allowed: sqlite, postgresql"),
        ),
        (
            '[store]\nbackend = "postgresql"',
            ConfigProblem("store.dsn", "required key missing"),
        ),
        (
            '[store]\nbackend = "postgresql"\ndsn = "host=db.example password=hunter2"',
            ConfigProblem(
                "store.dsn",
                "must not hold a password: use store.password_file or store.password_env",
            ),
        ),
        (
            '[store]\nbackend = "postgresql"\ndsn = "postgresql://u:hunter2@db.example/x"',
            ConfigProblem(
                "store.dsn",
                "must not hold a password: use store.password_file or store.password_env",
            ),
        ),
        (
            '[store]\nbackend = "postgresql"\ndsn = "host=\'db.example"',
            ConfigProblem(
                "store.dsn",
                "not a libpq connection string (key=value pairs or a postgresql:// URI)",
            ),
        ),
        (
            '[store]\nbackend = "postgresql"\ndsn = "host=db.example"\npath = "x.db"',
            ConfigProblem("store.path", "unknown key"),
        ),
        (
            '[store]\ndsn = "host=db.example"',
            ConfigProblem("store.dsn", "unknown key"),
        ),
        (
            '[store]\nbackend = "postgresql"\ndsn = "host=db.example"\n'
            "pool_min_size = 5\npool_max_size = 4",
            ConfigProblem("store", "pool_min_size must not exceed pool_max_size"),
        ),
        (
            '[store]\nbackend = "postgresql"\ndsn = "host=db.example"\n'
            "leader_poll_seconds = 2\nleader_session_timeout_seconds = 5",
            ConfigProblem(
                "store",
                "leader_session_timeout_seconds must be at least 3 x leader_poll_seconds "
                "(or a live leader loses its session between two polls)",
            ),
        ),
    ],
)
def test_rule_reported_at_its_key(tmp_path: Path, text: str, expected: ConfigProblem) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.problems == (expected,)


def test_postgresql_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dsn = (
        "host=db1.isp.example,db2.isp.example port=5432,5433 dbname=edgeagent "
        "user=edgeagent target_session_attrs=read-write"
    )
    (tmp_path / "pg.password").write_text("fake-pg-password\n", encoding="utf-8")
    settings = load_config(
        write(
            tmp_path,
            f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\npassword_file = "pg.password"\n',
        )
    )
    assert isinstance(settings.store, PostgresStoreConfig)
    assert settings.store.dsn == dsn
    assert settings.store.password() == "fake-pg-password"
    with pytest.raises(StoreError, match="store backend postgresql has no store file"):
        settings.store_path  # noqa: B018
    text = "\n".join(summary(settings))
    assert f"store       postgresql {dsn}" in text
    assert "fake-pg-password" not in text
    monkeypatch.setenv("EDGEAGENT_TEST_PG", "fake")
    both = write(
        tmp_path,
        f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
        'password_file = "pg.password"\npassword_env = "EDGEAGENT_TEST_PG"\n',
        "both.toml",
    )
    assert problems_of(both) == {"store: set password_file or password_env, not both"}
    neither = load_config(
        write(tmp_path, f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"', "n.toml")
    )
    assert isinstance(neither.store, PostgresStoreConfig)
    assert neither.store.password() is None  # peer or certificate login


def test_zone_names_go_through_canon(tmp_path: Path) -> None:
    path = write(tmp_path, '[rpz]\nzone = "bad name.example"\ncanary_name = "a;b.example"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.path for p in info.value.problems] == ["rpz.zone", "rpz.canary_name"]
    assert all(p.reason for p in info.value.problems)
    ok = load_config(write(tmp_path, '[rpz]\nzone = "RPZ.Example."\n', "ok.toml"))
    assert ok.rpz.zone == "rpz.example"


# ------------------------------------------------------------------------------ secrets


def test_read_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("fake-secret\r\n", encoding="utf-8")
    assert read_secret(secret, None) == "fake-secret"
    monkeypatch.setenv("EDGEAGENT_TEST_SECRET", "fake-env-secret")
    assert read_secret(None, "EDGEAGENT_TEST_SECRET") == "fake-env-secret"
    monkeypatch.delenv("EDGEAGENT_TEST_SECRET")
    for file, env in ((None, "EDGEAGENT_TEST_SECRET"), (tmp_path / "gone", None), (None, None)):
        with pytest.raises(ConfigError):
            read_secret(file, env)
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_secret(empty, None)
    assert info.value.problems[0].reason == "secret is empty"


def test_file_and_env_together_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEAGENT_TEST_SECRET", "fake")
    (tmp_path / "tok").write_text("fake\n", encoding="utf-8")
    path = write(
        tmp_path,
        '[feeds.a]\nkind = "url-list"\nurl = "https://feeds.example/a"\n'
        'auth = { kind = "bearer", token_file = "tok", token_env = "EDGEAGENT_TEST_SECRET" }\n',
    )
    assert problems_of(path) == {"feeds.a.auth: set token_file or token_env, not both"}


def test_enabled_routes_need_resolvers_without_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text('[routes]\nenabled = true\nproxy_next_hop = "192.0.2.80"\n', "utf-8")
    problems = problems_of(path)
    assert any(p.startswith("routes") and "resolvers" in p for p in problems), problems


def test_summary_names_the_mail_channels_and_the_console(tmp_path: Path) -> None:
    (tmp_path / "imap.password").write_text("fake-imap-password\n", encoding="utf-8")
    (tmp_path / "imap.password").chmod(0o600)
    settings = load_config(
        write(
            tmp_path,
            '[intake.mail]\nenabled = true\nhost = "mail.isp.example"\n'
            'user = "notices@isp.example"\npassword_file = "imap.password"\n'
            'lmtp_host = "127.0.0.1"\n'
            '[intake.mail.senders.hotline]\naddress = "notices@hotline.example"\n'
            'source = "hotline"\nreference_pattern = "HL-[0-9]+"\n'
            '[console]\nidle_minutes = 20\nsso_header = "X-Remote-User"\n',
        )
    )
    text = "\n".join(summary(settings))
    assert (
        "mail        IMAP notices@isp.example@mail.isp.example:993, LMTP 127.0.0.1:2424, "
        "1 trusted sender(s)"
    ) in text
    assert "console     on /console/ of the api, idle 20 min, SSO header X-Remote-User" in text
    assert "fake-imap-password" not in text
    off = "\n".join(summary(load_config(write(tmp_path, "[console]\nenabled = false\n", "o.toml"))))
    assert "mail        off" in off
    assert "console     off" in off
