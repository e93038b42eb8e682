"""``zonefile`` publisher: write, check, fsync, rename, reload, verify by canary.

For resolvers that load the RPZ from a file (BIND ``file``, Unbound ``rpz: zonefile:``,
Knot Resolver's watched file). Per :mod:`edgeagent.rpz.publishers.base`:

* validate: both zones (policy, exception) are streamed into temporary files next to their
  destinations (mode 0640, the resolver's group) and checked there -- every owner must be
  relative and no ``$INCLUDE``/``$ORIGIN``/``$GENERATE`` may appear, then
  ``named-checkzone`` (or, without it, dnspython with ``allow_include=False``) must accept
  the file. A failure discards the temporary files: the live files are never touched.
* apply: the previous files are hard-linked to ``<file>.prev``, the new ones renamed in,
  and the reload commands run for each zone (``{zone}`` and ``{file}`` are substituted).
  ``rndc reload`` exits 0 even for a broken zone, so the exit code is only a first filter.
* verify: every target must answer the canary TXT with the new serial within the timeout.
* keep old: on a failed apply/verify the ``.prev`` files are renamed back and the reload
  commands run again, so the resolver (and its next restart) serves the last good version.
* drift: the digest of each file is recorded when it goes live (or is restored);
  :meth:`ZonefilePublisher.drifted` is true when a file in place no longer matches.

The exception zone carries the same serial but no canary (BIND's ``policy passthru`` turns
any record in it into passthru); its correctness rests on the validation step.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from edgeagent.atomic import StagedFile, fsync_dir, remove_stale_temps, stage_file
from edgeagent.configtypes import FileMode, Items, OutputPath
from edgeagent.drift import WrittenFiles
from edgeagent.errors import PublishError
from edgeagent.plugins import own_config
from edgeagent.rpz.publishers.base import (
    CanaryResult,
    Publisher,
    PublisherConfig,
    PublisherContext,
    Reach,
    ResolverTarget,
    ZoneRelease,
    wait_for_serial,
    zone_file_name,
)

ZONE_MODE = 0o640
_DNSPYTHON_MAX_BYTES = 20 << 20  # above this dnspython is too slow/big to parse the zone


class ZonefileConfig(PublisherConfig):
    """``kind = "zonefile"``: write ``<directory>/<zone>.zone`` atomically, then run
    ``reload_command``."""

    kind: Literal["zonefile"]
    directory: OutputPath
    group: str | None = None
    mode: FileMode = 0o640
    check_command: Items[str] = ()
    reload_command: Items[str] = ()

    def reach(self, resolver: ResolverTarget) -> Reach:
        return Reach.ANY  # whichever resolver loads the files


@dataclass(frozen=True, slots=True)
class _ZoneFile:
    zone: str
    staged: StagedFile
    backup: Path | None  # hard link of the previous file, made during apply


@dataclass(slots=True)
class _Prepared:
    files: list[_ZoneFile]
    committed: bool = False


class ZonefilePublisher(Publisher[_Prepared]):
    """Publish both RPZ zones as files and reload them with the configured commands."""

    KIND = "zonefile"
    Config = ZonefileConfig

    def __init__(
        self,
        name: str,
        *,
        policy_path: str | os.PathLike[str],
        exception_path: str | os.PathLike[str],
        reload_commands: Sequence[Sequence[str]] = (),
        targets: Sequence[ResolverTarget] = (),
        group: str | int | None = None,
        mode: int = ZONE_MODE,
        checkzone: str | None = "named-checkzone",
        verify_timeout: float = 10.0,
        command_timeout: float = 60.0,
    ) -> None:
        super().__init__(name)
        self.policy_path = Path(policy_path)
        self.exception_path = Path(exception_path)
        self.reload_commands = tuple(tuple(c) for c in reload_commands)
        self.targets = tuple(targets)
        self.group = group
        self.mode = mode
        self.checkzone = shutil.which(checkzone) if checkzone else None
        self.verify_timeout = verify_timeout
        self.command_timeout = command_timeout
        self.written = WrittenFiles()

    @classmethod
    def from_config(cls, name: str, config: PublisherConfig, context: PublisherContext) -> Self:
        cfg = own_config(config, ZonefileConfig)
        return cls(
            name,
            policy_path=cfg.directory / zone_file_name(context.policy_zone),
            exception_path=cfg.directory / zone_file_name(context.exception_zone),
            reload_commands=[cfg.reload_command] if cfg.reload_command else [],
            targets=context.targets,
            group=cfg.group,
            mode=cfg.mode,
            checkzone=cfg.check_command[0] if cfg.check_command else "named-checkzone",
            verify_timeout=context.verify_timeout,
        )

    # -- validate ---------------------------------------------------------------------
    def prepare(self, release: ZoneRelease) -> _Prepared:
        s = release.settings
        staged = stage_zone_files(
            self.name,
            [
                (s.zone, self.policy_path, release.policy_text),
                (s.exception_zone, self.exception_path, release.exception_text),
            ],
            self.checkzone,
            self.mode,
            self.group,
        )
        return _Prepared(files=[_ZoneFile(zone, f, None) for zone, f in staged])

    # -- apply ------------------------------------------------------------------------
    def apply(self, prepared: _Prepared) -> None:
        for i, zf in enumerate(prepared.files):
            backup: Path | None = None
            dest = zf.staged.path
            if dest.exists():
                backup = dest.with_name(dest.name + ".prev")
                with contextlib.suppress(FileNotFoundError):
                    backup.unlink()
                os.link(dest, backup)
            prepared.files[i] = _ZoneFile(zf.zone, zf.staged, backup)
        for zf in prepared.files:
            zf.staged.commit()
        prepared.committed = True
        self.written.record(*(zf.staged.path for zf in prepared.files))
        self._reload(prepared)

    def _reload(self, prepared: _Prepared) -> None:
        for zf in prepared.files:
            for template in self.reload_commands:
                argv = [a.format(zone=zf.zone, file=str(zf.staged.path)) for a in template]
                try:
                    proc = subprocess.run(
                        argv, capture_output=True, timeout=self.command_timeout, check=False
                    )
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise PublishError(
                        self.name, f"reload command {argv[0]} failed: {type(exc).__name__}"
                    ) from exc
                if proc.returncode != 0:
                    raise PublishError(
                        self.name, f"reload command {argv[0]} exited {proc.returncode}"
                    )

    # -- verify -----------------------------------------------------------------------
    def verify(self, release: ZoneRelease) -> tuple[CanaryResult, ...]:
        return wait_for_serial(
            self.targets, release.settings.canary, release.serial, self.verify_timeout, self.name
        )

    def drifted(self) -> bool:
        return bool(self.written.drifted())

    # -- keep old on failure ----------------------------------------------------------
    def rollback(self, prepared: _Prepared) -> None:
        if not prepared.committed:
            return
        restored = False
        for zf in prepared.files:
            if zf.backup is not None and zf.backup.exists():
                os.replace(zf.backup, zf.staged.path)
                fsync_dir(zf.staged.path.parent)
                restored = True
        self.written.record(*(zf.staged.path for zf in prepared.files))
        if restored:
            # Best effort: the caller already gets the original PublishError.
            with contextlib.suppress(PublishError):
                self._reload(prepared)

    def cleanup(self, prepared: _Prepared) -> None:
        for zf in prepared.files:
            zf.staged.discard()
            if zf.backup is not None:
                with contextlib.suppress(FileNotFoundError):
                    zf.backup.unlink()


ZoneJob = tuple[str, Path, Callable[[], Iterator[str]]]
"""A zone to stage: its name, its destination file, and its text (streamed)."""


def stage_zone_files(
    publisher: str,
    jobs: Sequence[ZoneJob],
    checkzone: str | None,
    mode: int,
    group: str | int | None = None,
) -> list[tuple[str, StagedFile]]:
    """Stage each zone in a temporary file next to its destination and check it there
    (:func:`check_zone_file`), in order. Any failure discards every file staged so far and
    raises ``PublishError``: the live files are never touched."""
    staged: list[tuple[str, StagedFile]] = []
    try:
        for zone, path, text in jobs:
            remove_stale_temps(path)  # left by a writer killed mid-publish

            def check(tmp: Path, zone: str = zone) -> None:
                check_zone_file(tmp, zone, checkzone, publisher)

            staged.append((zone, stage_file(path, text(), mode, group=group, check=check)))
    except Exception as exc:
        for _, f in staged:
            f.discard()
        if isinstance(exc, PublishError):
            raise
        raise PublishError(publisher, f"cannot stage zone: {type(exc).__name__}") from exc
    return staged


def check_owners(path: Path, publisher: str) -> None:
    """Refuse a zone text with an absolute owner or a ``$`` directive other than ``$TTL``.

    The compiler never produces either; this guards against a bug or a tampered stream,
    since one absolute or out-of-zone owner can make Unbound drop the whole zone.
    """
    with path.open("r", encoding="ascii", errors="strict") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("$"):
                if not line.startswith("$TTL "):
                    raise PublishError(publisher, f"zone line {lineno}: directive not allowed")
                continue
            if line[:1] in (" ", "\t", "\n", ";"):
                continue
            owner = line.split(None, 1)[0]
            if owner.endswith(".") or (owner == "@" and lineno > 3):
                raise PublishError(publisher, f"zone line {lineno}: absolute or apex owner")


def check_zone_file(path: Path, zone: str, checkzone: str | None, publisher: str) -> None:
    """Validate a zone file for ``zone``; raise ``PublishError`` if a resolver could reject it.

    Messages carry line numbers only, never zone content (it is list data).
    """
    import dns.exception
    import dns.zone

    try:
        check_owners(path, publisher)
    except UnicodeDecodeError as exc:
        raise PublishError(publisher, "zone text is not ASCII") from exc
    if checkzone is not None:
        try:
            proc = subprocess.run(
                [checkzone, "-q", "-i", "none", "-k", "fail", "-n", "ignore", zone, str(path)],
                capture_output=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PublishError(publisher, f"named-checkzone failed: {type(exc).__name__}") from exc
        if proc.returncode != 0:
            raise PublishError(publisher, f"named-checkzone rejected zone {zone}")
        return
    if path.stat().st_size > _DNSPYTHON_MAX_BYTES:
        raise PublishError(publisher, "zone too large to check without named-checkzone")
    try:
        with path.open("r", encoding="ascii") as fh:
            dns.zone.from_file(fh, origin=zone, relativize=True, allow_include=False)
    except dns.exception.DNSException as exc:
        raise PublishError(publisher, f"zone {zone} does not parse: {type(exc).__name__}") from exc
