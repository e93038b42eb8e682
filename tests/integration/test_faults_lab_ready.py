"""The lab is ready only when every enforcement point answers its canary.

Squid's helper that cannot start (its interpreter cannot import the package) makes
Squid exit: the lab must then stop with an error naming what failed, and never write
``lab.json`` (which would list a proxy that is not there).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from edgeagent.lab import Lab
from edgeagent.lab.daemons import DaemonError
from tests.support.binaries import require_binary
from tests.support.figures import record

pytestmark = pytest.mark.integration


def test_lab_with_a_helper_that_cannot_start_is_never_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for program in ("named", "unbound", "squid", "sniproxy"):
        require_binary(program)
    broken = "/usr/bin/python3 -c 'import edgeagent_is_not_importable'"
    monkeypatch.setattr("edgeagent.lab.proxy.helper_command", lambda: broken)
    base = Path(tempfile.mkdtemp(prefix="edgeagent-lab-faults-"))
    base.chmod(0o711)  # Squid (user proxy) must reach it
    lab = Lab(base / "lab", keep=True)
    announced: list[Lab] = []
    lab.announce = announced.append
    started = time.monotonic()
    try:
        # Squid may die while it starts (the helpers crash at once) or after: either way
        # the lab refuses, before announcing anything.
        with pytest.raises(DaemonError, match=r"never became ready|squid exited") as raised:
            asyncio.run(asyncio.wait_for(lab.run(), timeout=180))
        assert "squid" in str(raised.value) or "proxy canary" in str(raised.value)
        assert not announced
        assert not lab.plan.info_path.exists()
        assert lab.group.procs == []  # every peer stopped
        refused_after = time.monotonic() - started
        print(f"lab refused to be ready after {refused_after:.1f} s")
        record("faults", "lab-ready", {"refused_after_seconds": round(refused_after, 1)})
    finally:
        shutil.rmtree(base, ignore_errors=True)
