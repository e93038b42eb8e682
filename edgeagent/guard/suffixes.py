"""The Public Suffix List: which names are public suffixes (never blocked, never allowed
whole); the system copy is read when it is newer than the bundled one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import idna
import publicsuffixlist

from edgeagent.errors import (
    ConfigError,
    ConfigProblem,
)
from edgeagent.guard.reasons import BUNDLED_PSL_FILE, SYSTEM_PSL_FILE

_PSL_VERSION = re.compile(r"^// VERSION: (\d{4}-\d{2}-\d{2})_(\d{2})-(\d{2})-(\d{2})_UTC", re.M)
_ICANN_BEGIN: Final = "// ===BEGIN ICANN DOMAINS==="
_PRIVATE_BEGIN: Final = "// ===BEGIN PRIVATE DOMAINS==="


def _a_label_form(rule_name: str) -> str | None:
    """The A-label spelling of one PSL rule name (without ``!``/``*.``), None if invalid.

    The list is written in U-labels; our names are A-labels. We use the ``idna`` package
    (IDNA2008/UTS 46), never the stdlib codec (IDNA2003 maps e.g. ``ß`` to ``ss``, a
    different name).
    """
    if rule_name.isascii():
        return rule_name
    try:
        return idna.encode(rule_name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


def _psl_stamp(path: Path, text: str) -> datetime:
    """When a PSL snapshot was taken: its ``// VERSION:`` header, else the file's mtime."""
    m = _PSL_VERSION.search(text)
    if m:
        return datetime.fromisoformat(f"{m[1]}T{m[2]}:{m[3]}:{m[4]}+00:00")
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


class PublicSuffixes:
    """Public Suffix List (ICANN and private sections) answering ``is_public_suffix`` fast.

    The rules are parsed once into three sets (exact rules, wildcard parents, exceptions),
    so a check is at most five set lookups with no allocation beyond one slice: it runs
    on every name of every feed. The same snapshot also feeds a
    ``publicsuffixlist.PublicSuffixList`` for :meth:`registrable_domain`; the tests prove
    both agree on every rule of the shipped list.

    Unknown single-label names (``example``, ``test``, a TLD not yet in the snapshot) are
    public suffixes, like the PSL's implicit ``*`` rule says: blocking a whole TLD is never
    right, whether or not the snapshot knows it.
    """

    __slots__ = (
        "_exact",
        "_exceptions",
        "_psl",
        "_wild_parents",
        "origin",
        "unencodable",
        "version",
    )

    def __init__(self, text: str, *, origin: str = "<text>", version: str = "") -> None:
        """Parse PSL ``text``. ``origin``/``version`` are reported by ``describe``."""
        exact: set[str] = set()
        wild: set[str] = set()
        exceptions: set[str] = set()
        unencodable = 0
        for raw in text.splitlines():
            # The PSL format: the rule is the first whitespace-separated token; comments
            # start with "//". This is exactly what publicsuffixlist itself does.
            fields = raw.split()
            if not fields or fields[0].startswith("//"):
                continue
            rule = fields[0].lower()
            if rule.startswith("!"):
                target, rule = exceptions, rule[1:]
            elif rule.startswith("*."):
                target, rule = wild, rule[2:]
            else:
                target = exact
            a_label = _a_label_form(rule)
            if a_label is None:
                # No canonical name can equal this rule, so it can never match: count it
                # so describe() shows the snapshot has rules IDNA2008 rejects.
                unencodable += 1
                continue
            target.add(a_label)
        self._exact = frozenset(exact)
        self._wild_parents = frozenset(wild)
        self._exceptions = frozenset(exceptions)
        self._psl = publicsuffixlist.PublicSuffixList(text.splitlines())
        self.origin = origin
        self.version = version
        self.unencodable = unencodable

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        system_file: Path | None = SYSTEM_PSL_FILE,
    ) -> PublicSuffixes:
        """Load a snapshot, offline.

        With ``path``: that file (it must have the ICANN and private section markers, or
        ``ConfigError``). Without: the snapshot bundled with ``publicsuffixlist``, unless
        ``system_file`` (Debian's ``publicsuffix`` package) exists, is well-formed and is
        newer. "Newer" compares the ``// VERSION:`` header, or the file's mtime when the
        header is missing (Debian's file has none). Never fetches anything.
        """
        if path is not None:
            p = Path(path)
            text = _read_psl(p)
            if text is None:
                raise ConfigError(
                    str(p), [ConfigProblem(str(p), "not a readable Public Suffix List")]
                )
            return cls(text, origin=str(p), version=_psl_stamp(p, text).isoformat())
        chosen = BUNDLED_PSL_FILE
        text = _read_psl(chosen)
        if text is None:  # pragma: no cover - a broken installation of publicsuffixlist
            raise ConfigError(str(chosen), [ConfigProblem(str(chosen), "bundled PSL unreadable")])
        stamp = _psl_stamp(chosen, text)
        if system_file is not None:
            sys_text = _read_psl(system_file)
            if sys_text is not None:
                sys_stamp = _psl_stamp(system_file, sys_text)
                if sys_stamp > stamp:
                    chosen, text, stamp = system_file, sys_text, sys_stamp
        return cls(text, origin=str(chosen), version=stamp.isoformat())

    def is_public_suffix(self, name: str) -> bool:
        """True when the canonical ``name`` is a public suffix; the root ``""`` is one too.

        ``com``, ``co.uk`` -> True; a registrable name under ``co.uk`` -> False.
        Wildcard rules make their parent and every direct child public, except the
        children named by an exception rule (``!``).
        """
        if not name:
            return True
        if name in self._exceptions:
            return False
        if name in self._exact or name in self._wild_parents:
            return True
        dot = name.find(".")
        if dot < 0:
            return True  # the implicit "*" rule: every top-level label
        return name[dot + 1 :] in self._wild_parents

    def registrable_domain(self, name: str) -> str | None:
        """The name's registrable domain (public suffix plus one label), ``None`` if none."""
        result = self._psl.privatesuffix(name)
        return result if isinstance(result, str) else None

    def describe(self) -> str:
        """One line for summaries: where the snapshot came from and how old it is."""
        skipped = f", {self.unencodable} rules not IDNA2008" if self.unencodable else ""
        return f"{self.origin} ({self.version or 'unknown version'}{skipped})"


def _read_psl(path: Path) -> str | None:
    """The text of a well-formed PSL file, or ``None`` if missing, unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if _ICANN_BEGIN not in text or _PRIVATE_BEGIN not in text:
        return None
    return text


# --------------------------------------------------------------------------- protected


def parent_suffixes(name: str) -> Iterator[str]:
    """``a.b.c`` -> ``a.b.c``, ``b.c``, ``c`` (most specific first), without splitting."""
    i = 0
    while True:
        yield name[i:]
        j = name.find(".", i)
        if j < 0:
            return
        i = j + 1
