"""The team's decision work with the CLI on the store (``--actor``, as the service user):
notices from a file, search, approve, revoke, tokens; identities checked, never ``$USER``.

The same commands with a token go through the daemon's API: see
the integration test of the NTD desk (``test_ntd_cli_flow``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.agent import create_tokens
from tests.support.cli import edgeagent
from tests.support.ports import free_port


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config with its own state directory and four token holders."""
    path = tmp_path / "edgeagent.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\ntime_zone = "Europe/Berlin"\n',
        encoding="utf-8",
    )
    # The same command, run in this process: the tests are about what follows.
    create_tokens(path, {"ana": "analyst", "sam": "supervisor", "sue": "supervisor"})
    return path


def ea(cfg: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = edgeagent(*args, "-c", str(cfg), env=env)
    return done.returncode, done.stdout, done.stderr


def audit(cfg: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(cfg.parent / "state" / "edgeagent.sqlite3")
    try:
        rows = con.execute("SELECT action, actor, subject FROM audit ORDER BY id").fetchall()
    finally:
        con.close()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


NOTICE = """# police notice POL-7, received by e-mail
http://shop1.hosted.test/listed/1.html

http://Shop2.Hosted.TEST/a/../listed.html
ip 192.0.2.7
domain co.uk
not a url at all
"""


def test_a_notice_from_a_file_gets_a_result_per_line(cfg: Path, tmp_path: Path) -> None:
    notice = tmp_path / "notice.txt"
    notice.write_text(NOTICE, encoding="utf-8")
    add = ("decision", "add", "-f", str(notice), "--reference", "POL-7")
    add += ("--source", "law-enforcement", "--reason", "police notice")
    add += ("--received", "2026-01-05T09:30")
    code, out, err = ea(cfg, *add)
    assert code == 2  # who?
    assert "--actor" in err
    code, out, err = ea(cfg, *add, "--actor", "ana")
    assert code == 3, err  # some lines were refused
    assert "line 2: accepted, decision 1: http://shop1.hosted.test/listed/1.html" in out
    assert "line 4: accepted, decision 2: http://shop2.hosted.test/listed.html" in out
    assert "line 5: pending, decision 3: 192.0.2.7" in out  # addresses need a second person
    assert "line 6: refused" in out
    assert "guardrail" in out
    assert "line 7: refused" in out
    assert "not a url at all" not in out  # refusals name a short hash, not the line
    assert "notice POL-7: 2 accepted, 1 pending approval, 2 refused" in out
    assert "daemon applies it" in err

    code, out, _ = ea(cfg, "decision", "list", "--reference", "POL-7", "--actor", "ana")
    assert code == 0
    assert len(out.splitlines()) == 3
    code, out, _ = ea(cfg, "decision", "list", "--target", "shop2.hosted.test", "--actor", "ana")
    assert out.startswith("#2 active")
    code, out, _ = ea(cfg, "decision", "show", "2", "--actor", "ana", "--json")
    assert '"notice_received_at": "2026-01-05T08:30:00+00:00"' in out  # Berlin time
    assert ("decision.notice", "ana", "notice:POL-7") in audit(cfg)


def test_a_notice_names_its_jurisdiction_and_may_override_the_hold(cfg: Path) -> None:
    add = ("decision", "add", "--source", "law-enforcement", "--reason", "police notice")
    add += ("--jurisdiction", "DE", "--actor", "ana")
    code, _, err = ea(cfg, *add, "http://a.hosted.test/1.html", "--reference", "POL-8")
    assert code == 0, err
    code, _, err = ea(cfg, *add, "http://b.hosted.test/2.html", "--reference", "POL-9", "--no-hold")
    assert code == 0, err
    code, out, _ = ea(
        cfg, "decision", "list", "--source", "law-enforcement", "--json", "--actor", "ana"
    )
    found = {d["reference"]: (d["jurisdiction"], d["hold"]) for d in json.loads(out)["items"]}
    assert found == {"POL-8": ("DE", True), "POL-9": ("DE", False)}  # held by default
    code, _, err = ea(cfg, *add, "http://c.hosted.test/", "--reference", "P", "--jurisdiction", "x")
    assert code == 2
    assert "jurisdiction" in err


def test_approve_and_revoke_with_four_eyes(cfg: Path) -> None:
    add = ("decision", "add", "198.51.100.9", "--scope", "ip", "--reference", "HOT-3")
    add += ("--source", "hotline", "--reason", "hotline notice")
    code, out, _ = ea(cfg, *add, "--actor", "sam")
    assert code == 0
    assert "pending, decision 1" in out

    code, _, err = ea(cfg, "decision", "approve", "1", "--actor", "ana")
    assert code == 3
    assert "ana has role analyst; this needs supervisor" in err
    code, _, err = ea(cfg, "decision", "approve", "1", "--actor", "sam")
    assert code == 3
    assert "creator cannot approve" in err
    code, out, _ = ea(cfg, "decision", "approve", "1", "--actor", "sue", "--reason", "checked")
    assert code == 0
    assert "#1 active" in out
    assert "approved by sue" in out
    code, _, err = ea(cfg, "decision", "revoke", "1", "--actor", "sue")
    assert code == 2
    assert "--reason" in err
    code, out, _ = ea(cfg, "decision", "revoke", "1", "--actor", "sam", "--reason", "appeal")
    assert code == 0
    assert "#1 revoked" in out
    assert "by sam: appeal" in out
    rows = audit(cfg)
    assert ("decision.approve", "sue", "decision:1") in rows
    assert ("decision.revoke", "sam", "decision:1") in rows
    code, _, err = ea(cfg, "decision", "approve", "1", "--actor", "nobody")
    assert code == 3
    assert "no unrevoked token" in err


def test_tokens_are_an_admins(cfg: Path, tmp_path: Path) -> None:
    # The service user made the first tokens; once an admin exists, tokens are theirs.
    code, out, _ = ea(cfg, "token", "create", "--role", "admin", "--name", "ada")
    assert code == 0
    secret = out.splitlines()[-1]
    code, _, err = ea(cfg, "token", "create", "--role", "noc", "--name", "nick")
    assert code == 2
    assert "--actor" in err
    code, _, err = ea(cfg, "token", "create", "--role", "noc", "--name", "nick", "--actor", "sam")
    assert code == 3
    assert "needs admin" in err
    token_file = tmp_path / "ada.token"
    token_file.write_text(secret + "\n", encoding="utf-8")
    token_file.chmod(0o644)
    code, _, err = ea(
        cfg, "token", "create", "--role", "noc", "--name", "nick", "--token-file", str(token_file)
    )
    assert code == 3
    assert "chmod 600" in err
    token_file.chmod(0o600)
    code, out, _ = ea(
        cfg, "token", "create", "--role", "noc", "--name", "nick", "--token-file", str(token_file)
    )
    assert code == 0
    assert ("token.create", "ada", "token:5") in audit(cfg)

    code, out, _ = ea(cfg, "token", "list", "--actor", "ada")
    assert code == 0
    assert secret not in out
    names = [line.split()[1] for line in out.splitlines()]
    assert names == ["ana", "sam", "sue", "ada", "nick"]
    code, out, _ = ea(cfg, "token", "revoke", "1", "--actor", "ada", "--reason", "left the team")
    assert (code, out.strip()) == (0, "token 1 of ana (analyst) revoked")
    code, _, err = ea(cfg, "decision", "list", "--actor", "ana")
    assert code == 3
    assert "no unrevoked token" in err
    rows = audit(cfg)
    assert ("token.list", "ada", "tokens") in rows
    assert ("token.revoke", "ada", "token:1") in rows
    assert all(actor != "root" and not actor.startswith("cli:") for _, actor, _ in rows)


def test_with_a_token_the_cli_asks_the_api(cfg: Path) -> None:
    port = free_port(udp=False)  # nothing listens there
    env = {"EDGEAGENT_TOKEN": "ea_not-checked-locally"}
    code, _, err = ea(cfg, "decision", "list", "--api", f"http://127.0.0.1:{port}", env=env)
    assert code == 1
    assert "API not reachable" in err
    code, _, err = ea(cfg, "decision", "list", "--actor", "ana", env=env)
    assert code == 3
    assert "not both" in err


def test_lookup_names_the_account_not_the_environment(cfg: Path) -> None:
    code, _, _ = ea(cfg, "lookup", "http://a.example/", env={"USER": "mallory"})
    assert code == 0
    code, _, _ = ea(cfg, "lookup", "http://a.example/", "--actor", "ana")
    lookups = [actor for action, actor, _ in audit(cfg) if action == "lookup"]
    assert lookups[0].startswith("os:")
    assert "mallory" not in lookups[0]
    assert lookups[1] == "ana"


def test_intake_outcomes_need_an_identity(cfg: Path) -> None:
    from edgeagent.intake.base import IntakeChannel, IntakeContent, NewIntakeItem
    from edgeagent.store import SqliteStore
    from edgeagent.store.base import AuditNote

    store = SqliteStore(cfg.parent / "state" / "edgeagent.sqlite3")
    try:
        content = IntakeContent(urls=("http://report.example/a.html",))
        item = store.add_intake_item(
            NewIntakeItem("RPT-9", IntakeChannel.PUBLIC_REPORT, content), AuditNote("intake.new")
        )
    finally:
        store.close()
    code, _, err = ea(cfg, "intake", "reject", str(item.id), "--reason", "not material")
    assert code == 2
    assert "--actor" in err
    code, out, _ = ea(cfg, "intake", "reject", str(item.id), "--reason", "no", "--actor", "ana")
    assert code == 0
    assert "is now rejected" in out
    assert any(a == "ana" and s == f"intake:{item.id}" for _, a, s in audit(cfg))
