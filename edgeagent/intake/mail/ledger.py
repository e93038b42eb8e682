"""Which mailbox messages are done: their decisions or triage item are stored.

The mailbox's own mark (an IMAP keyword) is set after the store commit and may be lost
with the connection; this ledger, written right after the commit, is what stops a
message from being applied twice when it is fetched again. A message is known by the
SHA-256 of its bytes (the same message fetched twice is the same bytes; nothing of its
content is kept). SQLite in the state directory, mode 0600.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from edgeagent.errors import EdgeAgentError

LEDGER_FILE_NAME = "mail-ledger.sqlite"


def message_key(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class MailLedger:
    def __init__(self, path: Path) -> None:
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY, done_at TEXT NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise EdgeAgentError(f"{path}: cannot open the mail ledger: {exc}") from None
        self._lock = threading.Lock()

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> MailLedger:
        return cls(state_dir / LEDGER_FILE_NAME)

    def done(self, key: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM done WHERE key = ?", (key,)).fetchone()
        return row is not None

    def record(self, key: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO done (key, done_at) VALUES (?, ?)",
                (key, datetime.now(UTC).isoformat()),
            )

    def count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM done").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
