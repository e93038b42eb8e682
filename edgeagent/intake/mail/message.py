"""What an e-mailed notice says: sender, subject, URLs, and the parts that were set aside.

Pure: bytes in, :class:`MailMessage` out; nothing here fetches, stores or logs. URLs come
from the text of the body (plain or HTML) and from attached lists (CSV, JSON or plain
text, by type or file name). Every other attachment (images, archives, documents) is set
aside unopened: its payload is never decoded, only its declared type and its size as
sent are kept. A message the parser finds defects in, or with other than exactly one
From address, carries ``problems`` (a person has to look at it).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

_URL = re.compile(r"(?i)\bhttps?://[^\s<>\"'`\]\[{}|\\^]+")
_TRAILING = ".,;:!?)"
_LIST_TYPES = ("text/csv", "application/json", "text/plain")
_LIST_SUFFIXES = (".csv", ".json", ".txt")
MAX_TEXT_CHARS = 100_000  # of body text scanned for URLs and references


@dataclass(frozen=True, slots=True)
class SetAside:
    """An attachment discarded unopened: its declared type and size as sent."""

    content_type: str
    size: int

    def describe(self) -> str:
        return f"{self.content_type}, {self.size} bytes"


@dataclass(frozen=True, slots=True)
class MailMessage:
    """The parts of a message the intake uses (``sender`` lower-case, or empty)."""

    sender: str
    subject: str
    message_id: str
    text: str
    urls: tuple[str, ...]
    set_aside: tuple[SetAside, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]


def parse_message(raw: bytes) -> MailMessage:
    """The parts of ``raw`` (see the module docstring); never raises on bad input."""
    try:
        # compat32: headers stay strings until asked for (the default policy's header
        # objects cost more than everything else here); the subject is decoded below.
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
        return _parts(msg)
    except Exception as exc:
        return MailMessage("", "", "", "", (), (), (f"unreadable message: {type(exc).__name__}",))


def _parts(msg: Message) -> MailMessage:
    problems: list[str] = []
    froms = msg.get_all("From") or []
    addresses = [a for _, a in getaddresses([str(f) for f in froms]) if a]
    if len(froms) != 1 or len(addresses) != 1:
        problems.append(f"{len(addresses)} From addresses in {len(froms)} From headers")
    sender = addresses[0].lower() if len(addresses) == 1 and "@" in addresses[0] else ""
    texts: list[str] = []
    urls: list[str] = []
    set_aside: list[SetAside] = []
    for part in msg.walk():
        problems.extend(f"MIME defect: {type(d).__name__}" for d in part.defects)
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        is_attachment = part.get_content_disposition() == "attachment" or bool(part.get_filename())
        if is_attachment and _is_list(part, kind):
            urls.extend(_list_urls(_text_of(part), kind, part.get_filename() or ""))
        elif not is_attachment and part.get_content_maintype() == "text":
            texts.append(_text_of(part))
        else:
            set_aside.append(SetAside(kind, len(str(part.get_payload(decode=False)))))
    text = "\n".join(texts)[:MAX_TEXT_CHARS]
    return MailMessage(
        sender=sender,
        subject=_decoded(str(msg.get("Subject", "")))[:998],
        message_id=str(msg.get("Message-ID", "")).strip()[:998],
        text=text,
        urls=_unique([*find_urls(text), *urls]),
        set_aside=tuple(set_aside),
        problems=tuple(dict.fromkeys(problems)),
    )


def _decoded(header: str) -> str:
    """A header's text with RFC 2047 encoded words decoded, folding removed."""
    try:
        text = str(make_header(decode_header(header)))
    except (ValueError, LookupError, UnicodeError):  # a broken encoded word: keep it raw
        text = header
    return " ".join(text.split())


def _is_list(part: Message, kind: str) -> bool:
    name = (part.get_filename() or "").lower()
    return kind in _LIST_TYPES or name.endswith(_LIST_SUFFIXES)


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[: MAX_TEXT_CHARS * 4].decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return payload[: MAX_TEXT_CHARS * 4].decode("utf-8", errors="replace")


def _list_urls(text: str, kind: str, filename: str) -> list[str]:
    """URLs of an attached list: JSON strings (an array, or ``{"urls": [...]}``), CSV
    cells, else every URL in the text."""
    if kind == "application/json" or filename.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError:
            return find_urls(text)
        if isinstance(data, dict):
            data = data.get("urls", [])
        if isinstance(data, list):
            return [u for s in data if isinstance(s, str) for u in find_urls(s)]
        return []
    if kind == "text/csv" or filename.lower().endswith(".csv"):
        return [u for row in csv.reader(io.StringIO(text)) for cell in row for u in find_urls(cell)]
    return find_urls(text)


def find_urls(text: str) -> list[str]:
    """Every http(s) URL in ``text``, trailing punctuation removed, in order."""
    return [m.group(0).rstrip(_TRAILING) for m in _URL.finditer(text)]


def _unique(urls: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(u for u in urls if u))
