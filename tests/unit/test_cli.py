"""The ``edgeagent`` command line, run as a user would: a real process, real files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.agent import create_tokens
from tests.support.cli import edgeagent

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "edgeagent.example.toml"
FIXTURES = REPO / "tests" / "fixtures" / "config"


@pytest.fixture
def state_config(tmp_path: Path) -> Path:
    """A minimal config with its own state directory (no feeds, no listeners used)."""
    cfg = tmp_path / "edgeagent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    return cfg


def test_version() -> None:
    result = edgeagent("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("edgeagent ")


def test_lab_without_its_extra_names_the_extra() -> None:
    # As if aiosmtpd (the lab extra) were not installed.
    code = (
        "import sys; sys.modules['aiosmtpd'] = None; from edgeagent.cli import main; "
        "sys.exit(main(['lab']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "the lab needs aiosmtpd" in result.stderr
    assert "edgeagent[lab]" in result.stderr


def test_check_config_accepts_the_shipped_example() -> None:
    result = edgeagent("check-config", "-c", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert "feeds" in result.stdout


def test_check_config_names_every_mistake_and_exits_2() -> None:
    result = edgeagent("check-config", "-c", str(FIXTURES / "three-mistakes.toml"))
    assert result.returncode == 2
    for key in ("api.listen", "feeds.hotline.interval_seconds", "feeds.police.url"):
        assert key in result.stderr
    assert "3 problem(s)" in result.stderr


def test_check_config_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = edgeagent("check-config", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "cannot read file" in result.stderr


def test_config_from_environment_variable(state_config: Path) -> None:
    result = edgeagent("check-config", env={"EDGEAGENT_CONFIG": str(state_config)})
    assert result.returncode == 0
    assert str(state_config) in result.stdout


def test_token_create_prints_the_secret_once_and_stores_only_a_hash(state_config: Path) -> None:
    result = edgeagent(
        "token", "create", "--role", "analyst", "--name", "ana", "-c", str(state_config)
    )
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1]
    assert len(secret) > 30
    db = state_config.parent / "state" / "edgeagent.sqlite3"
    raw = db.read_bytes() + b"".join(p.read_bytes() for p in db.parent.glob("*-wal"))
    assert secret.encode() not in raw
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_bad_role_is_refused(state_config: Path) -> None:
    result = edgeagent("token", "create", "--role", "root", "--name", "x", "-c", str(state_config))
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_audit_verify_names_an_edited_row(state_config: Path) -> None:
    for name in ("a", "b", "c"):
        ok = edgeagent("token", "create", "--role", "noc", "--name", name, "-c", str(state_config))
        assert ok.returncode == 0
    good = edgeagent("audit", "verify", "-c", str(state_config))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "3 rows" in good.stdout

    db = state_config.parent / "state" / "edgeagent.sqlite3"
    con = sqlite3.connect(db)
    triggers = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for trig in triggers:  # a tamperer with file access can drop them: the chain still holds
        con.execute(f'DROP TRIGGER "{trig}"')
    con.execute("UPDATE audit SET actor = 'mallory' WHERE id = 2")
    con.commit()
    con.close()

    bad = edgeagent("audit", "verify", "-c", str(state_config))
    assert bad.returncode == 1
    assert "row 2" in bad.stdout


def test_lookup_explains_a_decision(state_config: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from edgeagent.config import load_config
    from edgeagent.decisions import DecisionRequest
    from edgeagent.model import Action, NoticeSource, Scope
    from edgeagent.service import Agent

    agent = Agent.build(load_config(state_config))
    try:
        agent.decisions.create(
            DecisionRequest(
                target="http://mixed.example/listed.html",
                scope=Scope.URL,
                action=Action.BLOCK,
                reason="hotline report",
                reference="CASE-7",
                source=NoticeSource.HOTLINE,
                notice_received_at=datetime.now(UTC),
            ),
            actor="ana",
        )
    finally:
        agent.close()
    listed = edgeagent("lookup", "http://MIXED.example/./listed.html", "-c", str(state_config))
    assert listed.returncode == 0, listed.stderr
    assert "DNS:   divert" in listed.stdout
    assert "proxy: stop-page" in listed.stdout
    assert "CASE-7" in listed.stdout
    sibling = edgeagent("lookup", "http://mixed.example/other.html", "-c", str(state_config))
    assert "proxy: pass" in sibling.stdout
    bad = edgeagent("lookup", "*.example", "-c", str(state_config))
    assert bad.returncode == 2
    assert "invalid target" in bad.stderr


def test_sync_against_the_bundled_samples_prints_per_feed_counts(tmp_path: Path) -> None:
    env = {"EDGEAGENT_STATE_DIR": str(tmp_path / "state"), "EDGEAGENT_CONFIG": ""}
    nobody = edgeagent("sync", env=env)
    assert nobody.returncode == 2  # it changes state: who asks?
    assert "--actor" in nobody.stderr
    assert (
        edgeagent("token", "create", "--role", "analyst", "--name", "ana", env=env).returncode == 0
    )
    first = edgeagent("sync", "--actor", "ana", env=env)
    assert first.returncode == 0, first.stderr
    lines = {line.split()[0]: line for line in first.stdout.splitlines()}
    assert set(lines) == {"hotline-sample", "police-sample"}
    for line in lines.values():
        assert " live " in line
        assert "rejected" in line  # the samples carry injection lines on purpose
    again = edgeagent("sync", "--feed", "police-sample", "--actor", "ana", env=env)
    assert again.returncode == 0
    assert "unchanged" in again.stdout
    unknown = edgeagent("sync", "--feed", "nope", "--actor", "ana", env=env)
    assert unknown.returncode == 3
    assert "feed nope not found" in unknown.stderr


def test_report_takedown_writes_csv(tmp_path: Path) -> None:
    cfg = tmp_path / "edgeagent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        "[takedown]\nenabled = true\n"
        'own_prefixes = ["198.51.100.0/24"]\n'
        'resolvers = [{ host = "127.0.0.1", port = 5353 }]\n',
        encoding="utf-8",
    )
    out = tmp_path / "report.csv"
    result = edgeagent("report", "takedown", "--from", "2026-01-01", "-o", str(out), "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    header, first = out.read_text(encoding="utf-8").splitlines()[:2]
    assert "median" in header
    assert "p90" in header
    assert first.startswith("all,0")
    bad = edgeagent("report", "takedown", "--from", "yesterday", "-c", str(cfg))
    assert bad.returncode == 2
    assert "--from takes an ISO 8601 date" in bad.stderr


def test_report_takedown_needs_takedown_enabled(state_config: Path) -> None:
    result = edgeagent("report", "takedown", "-c", str(state_config))
    assert result.returncode == 2
    assert "takedown is not enabled" in result.stderr


def test_feed_approve_and_discard_a_held_generation(tmp_path: Path) -> None:
    lst = tmp_path / "police.txt"
    cfg = tmp_path / "edgeagent.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[feeds.police]\nkind = "domain-list"\npath = "{lst}"\n',
        encoding="utf-8",
    )
    create_tokens(cfg, {"ana": "analyst", "sam": "supervisor"})  # in this process: set-up
    lst.write_text("".join(f"s{i}.listed.example\n" for i in range(200)), encoding="utf-8")
    assert " live " in edgeagent("sync", "--actor", "ana", "-c", str(cfg)).stdout
    lst.write_text("s1.listed.example\n", encoding="utf-8")  # a 99.5 % shrink: held
    held = edgeagent("sync", "--actor", "ana", "-c", str(cfg))
    assert " held " in held.stdout
    plan = edgeagent("plan", "-c", str(cfg))
    assert "HELD feed police" in plan.stdout
    assert "+0 -199" in plan.stdout  # what approving it would change
    assert "s7.listed.example" not in plan.stdout  # the entries: a supervisor's
    entries = edgeagent("plan", "--entries", "--actor", "sam", "-c", str(cfg))
    assert "    - block domain s7.listed.example" in entries.stdout, entries.stderr
    refused = edgeagent("plan", "--entries", "--actor", "ana", "-c", str(cfg))
    assert refused.returncode == 2
    assert "supervisor" in refused.stderr

    missing = edgeagent("feed", "approve", "police", "--actor", "sam", "-c", str(cfg))
    assert missing.returncode == 2
    assert "--reason" in missing.stderr
    analyst = edgeagent(
        "feed", "discard", "police", "--reason", "x", "--actor", "ana", "-c", str(cfg)
    )
    assert analyst.returncode == 3
    assert "needs supervisor" in analyst.stderr
    done = edgeagent(
        "feed", "discard", "police", "--reason", "broken export", "--actor", "sam", "-c", str(cfg)
    )
    assert done.returncode == 0, done.stderr
    assert "discarded" in done.stdout
    again = edgeagent(
        "feed", "approve", "police", "--reason", "x", "--actor", "sam", "-c", str(cfg)
    )
    assert again.returncode == 3
    assert "not found" in again.stderr
    assert "no held feed generations" in edgeagent("plan", "-c", str(cfg)).stdout
    discards = [r for r in _audit(cfg) if r[0] == "feed.discard"]
    assert discards == [("feed.discard", "sam")]


def _audit(cfg: Path) -> list[tuple[str, str]]:
    """``(action, actor)`` of every audit row of the store next to ``cfg``."""
    con = sqlite3.connect(cfg.parent / "state" / "edgeagent.sqlite3")
    try:
        return [(r[0], r[1]) for r in con.execute("SELECT action, actor FROM audit ORDER BY id")]
    finally:
        con.close()


def test_root_does_not_write_into_the_service_users_state_dir(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test checks root's behaviour; run the suite as root (CI does)")
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)  # as if created by the service user (nobody here)
    cfg = tmp_path / "edgeagent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{state}"\n', encoding="utf-8")
    result = edgeagent("token", "create", "--role", "noc", "--name", "n", "-c", str(cfg))
    assert result.returncode == 2
    assert "sudo -u" in result.stderr
    assert list(state.iterdir()) == []  # nothing created as root
