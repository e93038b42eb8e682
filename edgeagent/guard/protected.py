"""Protected names (high-traffic, infrastructure, reference) and the agent's reserved
names: which entries touch or cover them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import IntEnum
from pathlib import Path

from edgeagent.canon import canonical_name
from edgeagent.errors import (
    ConfigError,
    ConfigProblem,
    InvalidTarget,
)
from edgeagent.guard.suffixes import PublicSuffixes, parent_suffixes


class Protection(IntEnum):
    """How strongly the guard keeps a name from being listed (a higher value wins)."""

    NONE = 0
    PROTECTED = 1  # high-traffic, infrastructure, reference: a second person must approve
    RESERVED = 2  # the agent's own names (canary, stop page, policy zones): never listed


class ProtectedNames:
    """Names that must not be listed by accident: protected names and reserved names.

    *Protected* names (high-traffic, infrastructure, reference; the list files) protect
    themselves and all their subdomains; a ``domain`` entry of one of their parents would
    cover them too. *Reserved* names are the agent's own (``Settings.reserved_names()``): the same
    shape, but nothing may list them at all. This is the one place that knows both.

    :meth:`protection` costs one dict lookup per label, :meth:`cover_protection` exactly
    one (every suffix of every name is precomputed). Iterating, ``len`` and ``in`` see the
    protected names only (the addresses of those are kept from diversion).
    """

    __slots__ = ("_covers", "_kinds", "_names", "_reserved")

    def __init__(self, names: Iterable[str] = (), reserved: Iterable[str] = ()) -> None:
        """Build from canonical names (use :meth:`load_dir` for list files)."""
        self._names = frozenset(names)
        self._reserved = frozenset(reserved)
        kinds = dict.fromkeys(self._names, Protection.PROTECTED)
        kinds.update(dict.fromkeys(self._reserved, Protection.RESERVED))
        covers: dict[str, Protection] = {}
        for name, kind in kinds.items():
            for suffix in parent_suffixes(name):
                covers[suffix] = max(kind, covers.get(suffix, Protection.NONE))
            covers[""] = max(kind, covers.get("", Protection.NONE))  # the root covers all
        self._kinds: Mapping[str, Protection] = kinds
        self._covers: Mapping[str, Protection] = covers

    @classmethod
    def parse(
        cls,
        lines: Iterable[str],
        source: str,
        *,
        public_suffixes: PublicSuffixes | None = None,
    ) -> tuple[set[str], list[ConfigProblem]]:
        """Parse list lines; return the names and every problem as ``source:LINE``.

        Format: one name per line; ``#`` starts a comment (whole line or trailing); blank
        lines are ignored. A name is canonicalised with ``canonical_name`` (so ``Example.``
        is accepted as ``example``); anything it rejects is a problem. With
        ``public_suffixes``, a public suffix is a problem too: protecting ``com`` would
        put every block under it behind four-eyes, and suffixes are refused anyway.
        """
        names: set[str] = set()
        problems: list[ConfigProblem] = []
        for number, raw in enumerate(lines, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            where = f"{source}:{number}"
            if len(text.split()) != 1:
                problems.append(ConfigProblem(where, "expected one name per line"))
                continue
            try:
                name = canonical_name(text)
            except InvalidTarget as exc:
                problems.append(ConfigProblem(where, exc.reason))
                continue
            if public_suffixes is not None and public_suffixes.is_public_suffix(name):
                problems.append(ConfigProblem(where, "is a public suffix (always refused)"))
                continue
            names.add(name)
        return names, problems

    @classmethod
    def load_files(
        cls,
        paths: Iterable[str | Path],
        *,
        public_suffixes: PublicSuffixes | None = None,
        reserved: Iterable[str] = (),
    ) -> ProtectedNames:
        """Load list files; raise ``ConfigError`` listing every bad line of every file.

        ``reserved``: the agent's own names (``Settings.reserved_names()``), canonical.
        """
        names: set[str] = set()
        problems: list[ConfigProblem] = []
        for p in paths:
            path = Path(p)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(ConfigProblem(path.name, f"cannot read: {exc.__class__.__name__}"))
                continue
            found, bad = cls.parse(text.splitlines(), path.name, public_suffixes=public_suffixes)
            names |= found
            problems += bad
        if problems:
            raise ConfigError("protected names", problems)
        return cls(names, reserved)

    @classmethod
    def load_dir(
        cls,
        directory: str | Path,
        *,
        public_suffixes: PublicSuffixes | None = None,
        reserved: Iterable[str] = (),
    ) -> ProtectedNames:
        """Load every ``*.txt`` in ``directory`` (sorted); a missing directory is an error."""
        d = Path(directory)
        if not d.is_dir():
            raise ConfigError("protected names", [ConfigProblem(str(d), "not a directory")])
        files = sorted(d.glob("*.txt"))
        return cls.load_files(files, public_suffixes=public_suffixes, reserved=reserved)

    def match(self, name: str) -> str | None:
        """The protected name that ``name`` equals or lies under (most specific), or None."""
        for candidate in parent_suffixes(name):
            if candidate in self._names:
                return candidate
        return None

    def protection(self, name: str) -> Protection:
        """The strongest protection of ``name`` itself or of any name it lies under."""
        # An explicit loop, not parent_suffixes(): a generator costs twice the time here,
        # and this runs on every name of every feed.
        kinds = self._kinds
        if not kinds:
            return Protection.NONE
        found = Protection.NONE
        i = 0
        while True:
            kind = kinds.get(name[i:] if i else name)
            if kind is not None:
                if kind is Protection.RESERVED:
                    return kind
                found = kind
            j = name.find(".", i)
            if j < 0:
                return found
            i = j + 1

    def cover_protection(self, domain: str) -> Protection:
        """The strongest protection among the names a ``domain`` entry of ``domain`` covers
        (the name and its subdomains): ``domain`` equals such a name or is a parent of it.
        (A name's *subdomains* are answered by :meth:`protection`.)"""
        return self._covers.get(domain, Protection.NONE)

    def protects(self, name: str) -> bool:
        """True when ``name`` is a protected or reserved name, or a subdomain of one."""
        return self.protection(name) is not Protection.NONE

    def covers_protected(self, domain: str) -> bool:
        """True when a ``domain`` entry of ``domain`` (name and subdomains) would cover a
        protected or reserved name."""
        return domain in self._covers

    @property
    def reserved(self) -> tuple[str, ...]:
        """The reserved names, sorted."""
        return tuple(sorted(self._reserved))

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names))


# --------------------------------------------------------------------------- limits
