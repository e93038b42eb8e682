"""The mailbox, over IMAP with TLS: list what is not done, fetch it, mark it done.

Messages are fetched with ``BODY.PEEK[]`` (fetching does not change them) and marked
with the ``\\Seen`` flag and the :data:`DONE_KEYWORD` keyword only once the intake has
stored what they became; they are never deleted (the mailbox keeps the evidence). The
server's certificate is always verified (against ``ca_file`` when given).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from pathlib import Path
from types import TracebackType

from edgeagent.errors import EdgeAgentError

DONE_KEYWORD = "EdgeagentDone"
_SIZE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)")


class MailboxError(EdgeAgentError):
    """The mailbox could not be read or marked (the message says which step)."""


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class ImapMailbox:
    """One session on ``folder``; use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        folder: str = "INBOX",
        context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._address = (host, port)
        self._login = (user, password)
        self._folder = folder
        self._context = context or ssl.create_default_context()
        self._timeout = timeout
        self._imap: imaplib.IMAP4_SSL | None = None
        self._uidvalidity = ""

    def __enter__(self) -> ImapMailbox:
        host, port = self._address
        try:
            self._imap = imaplib.IMAP4_SSL(
                host, port, ssl_context=self._context, timeout=self._timeout
            )
            self._imap.login(*self._login)
            status, _ = self._imap.select(_quoted(self._folder))
        except (imaplib.IMAP4.error, OSError) as exc:
            self._close()
            raise MailboxError(
                f"imap {host}:{port}: cannot open the mailbox: {_why(exc)}"
            ) from None
        if status != "OK":
            self._close()
            raise MailboxError(f"imap {host}:{port}: no folder {self._folder!r}")
        _, validity = self._imap.response("UIDVALIDITY")
        self._uidvalidity = (validity[0] or b"").decode("ascii", "replace") if validity else ""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        with contextlib.suppress(imaplib.IMAP4.error, OSError):  # the connection is gone
            imap.logout()

    def _session(self) -> imaplib.IMAP4_SSL:
        if self._imap is None:
            raise MailboxError("the mailbox is not open")
        return self._imap

    def pending(self) -> list[tuple[int, int]]:
        """``(uid, size)`` of every message not yet marked done, oldest first."""
        imap = self._session()
        try:
            status, data = imap.uid("SEARCH", "UNKEYWORD", DONE_KEYWORD)
            uids = [int(u) for u in (data[0] or b"").split()] if status == "OK" else []
            if not uids:
                return []
            status, rows = imap.uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"imap: cannot list messages: {_why(exc)}") from None
        sizes: dict[int, int] = {}
        for row in rows:
            found = _SIZE.search(row if isinstance(row, bytes) else b"")
            if found:
                a, b, c, d = found.groups()
                uid, size = (int(a), int(b)) if a else (int(d), int(c))
                sizes[uid] = size
        return sorted(sizes.items())

    def identity(self, uid: int) -> str:
        """What names message ``uid`` of this folder for good (UIDs are unique within
        one UIDVALIDITY)."""
        host, port = self._address
        return f"{host}:{port}/{self._folder}/{self._uidvalidity}/{uid}"

    def fetch(self, uid: int) -> bytes:
        """The message's bytes, exactly as stored; ``MailboxError`` if it cannot be read."""
        try:
            status, rows = self._session().uid("FETCH", str(uid), "(BODY.PEEK[])")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"imap: cannot fetch message uid {uid}: {_why(exc)}") from None
        for row in rows:
            if isinstance(row, tuple) and len(row) == 2 and isinstance(row[1], bytes):
                return row[1]
        raise MailboxError(f"imap: message uid {uid} is gone ({status})")

    def mark_done(self, uid: int) -> None:
        try:
            status, _ = self._session().uid(
                "STORE", str(uid), "+FLAGS.SILENT", f"(\\Seen {DONE_KEYWORD})"
            )
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"imap: cannot mark message uid {uid}: {_why(exc)}") from None
        if status != "OK":
            raise MailboxError(f"imap: cannot mark message uid {uid}: {status}")


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _why(exc: BaseException) -> str:
    """Why a step failed, without echoing the server's text (it may quote the message)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
