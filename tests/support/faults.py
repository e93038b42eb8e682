"""What the fault tests share: a small tmpfs, the artefacts read back, decisions posted.

- :func:`tmpfs` mounts a tmpfs of ``size`` at a directory (root only) and unmounts it.
- :func:`fill` writes a file until the file system is full; returns its path.
- :func:`zone_serial` parses a zone file completely (a partial zone raises) and returns
  its SOA serial; :func:`index_version` opens a proxy index (checksum verified) and
  returns the policy version it was built from.
- :func:`decision` is the body of a block decision for a reserved name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rdatatype
import dns.zone
import pytest

from edgeagent.proxy.index import IndexReader

ZONE = "block.rpz.invalid"


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)],
        check=True,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> Path:
    """A file in ``directory`` that takes every free byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 512):  # the last partial chunk in smaller writes
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def zone_serial(path: Path) -> int:
    """The SOA serial of a complete zone file; raises on a partial or malformed one."""
    zone = dns.zone.from_file(str(path), origin=ZONE, relativize=False, check_origin=True)
    soa = zone.get_rdataset(ZONE + ".", dns.rdatatype.SOA)
    assert soa is not None, path
    return int(soa[0].serial)  # type: ignore[attr-defined]


def index_ok(path: Path) -> bool:
    """The proxy index opens and its checksum verifies."""
    reader = IndexReader.open(path)
    reader.close()
    return True


def decision(name: str, scope: str = "domain") -> dict[str, Any]:
    target = f"http://{name}/listed.html" if scope == "url" else name
    return {
        "target": target,
        "scope": scope,
        "action": "block",
        "reason": "fault test",
        "reference": f"CASE-{name}",
        "source": "hotline",
    }
