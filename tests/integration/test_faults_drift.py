"""Drift under the running daemon: the zone file and the proxy index changed behind its
back are found by the next verify pass (``verify_interval_seconds`` = 5) and written
again from the current state, with a new serial for the zone; each repair counts
``edgeagent_drift_repairs_total{artefact}``. Routes: see ``test_daemon_routes``.

Squid's config is the operator's (rendered once, deployed with Squid), not an artefact
the agent writes: a change that stops Squid asking the helper is found by the proxy
canary at the next verify pass (``/readyz`` names the proxy, the alert's metric drops) and
clears when the config is put back."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from edgeagent.lab.daemons import HOST
from tests.support.agent import create_token, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.faults import (
    decision,
    index_ok,
    squid_canary_agent,
    start_agent_squid,
    zone_serial,
    zonefile_agent,
)
from tests.support.figures import record
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

INTERVAL = 5  # rpz and proxy verify_interval_seconds (the smallest allowed)


def _repairs(metrics_port: int, artefact: str) -> float:
    _, text = http_json("GET", f"http://127.0.0.1:{metrics_port}/metrics")
    found = re.search(rf'edgeagent_drift_repairs_total{{artefact="{artefact}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_zone_file_and_index_changed_behind_the_agent_are_repaired(tmp_path: Path) -> None:
    interval = f"verify_interval_seconds = {INTERVAL}\n"
    agent = zonefile_agent(tmp_path, rpz=interval, proxy=interval)
    api, metrics_port, zone, index = agent.api, agent.metrics_port, agent.zone, agent.index
    token = create_token(agent.config, "analyst", "ana")

    with running_agent(agent.config, metrics_port, tmp_path / "daemon.log") as proc:
        for body in (decision("page.example", "url"), decision("drift.example")):
            status, _ = http_json("POST", f"{api}/v1/decisions", token, body)
            assert status == 201

        def settled() -> bool:
            # Both artefacts at the store's latest version: a publish still to come would
            # rewrite the zone below as an update, not a repair.
            status = http_json("GET", f"{api}/v1/status", token)[1]
            publishers, latest = status["publishers"], status["policy_version"]
            version = publishers["proxy-index"]["published_version"]
            return version == latest and publishers["rpz"]["policy_version"] == latest

        wait_for("the zone", lambda: zone.exists() and "drift.example" in zone.read_text(), 20)
        wait_for("the index of the same version", settled, 20)
        written_serial, written_index = zone_serial(zone), index.read_bytes()

        # Someone drops the entry from the zone file (a valid zone, same serial).
        kept = [line for line in zone.read_text().splitlines() if "drift.example" not in line]
        zone.write_text("\n".join(kept) + "\n")
        edited = time.monotonic()
        wait_for("the zone repaired", lambda: "drift.example" in zone.read_text(), 3 * INTERVAL)
        zone_repair = time.monotonic() - edited
        assert zone_serial(zone) > written_serial  # a new release, never the same or older
        assert zone.stat().st_mode & 0o777 == 0o640
        assert _repairs(metrics_port, "files") == 1

        # Someone truncates the index in place.
        with index.open("r+b") as fh:
            fh.truncate(len(written_index) // 2)
        edited = time.monotonic()
        wait_for("the index repaired", lambda: index.read_bytes() == written_index, 3 * INTERVAL)
        index_repair = time.monotonic() - edited
        assert index_ok(index)
        assert _repairs(metrics_port, "proxy-index") == 1

        # Deleted outright: written again too.
        zone.unlink()
        wait_for("the zone back", zone.exists, 3 * INTERVAL)
        assert "drift.example" in zone.read_text()
        assert _repairs(metrics_port, "files") == 2

        # Untouched artefacts are not rewritten.
        serial = zone_serial(zone)
        time.sleep(INTERVAL + 1)
        assert zone_serial(zone) == serial
        assert _repairs(metrics_port, "proxy-index") == 1
        log = (tmp_path / "daemon.log").read_text()
        assert "drift.example" not in log
        assert "page.example" not in log
        print(f"drift: zone repaired in {zone_repair:.1f} s, index in {index_repair:.1f} s")
        record(
            "faults",
            "drift",
            {
                "zone_seconds": round(zone_repair, 1),
                "index_seconds": round(index_repair, 1),
                "interval_seconds": INTERVAL,
            },
        )
        assert proc.poll() is None


def test_squid_config_changed_behind_the_agent_fails_the_canary_until_put_back() -> None:
    require_binary("squid")
    base = Path(tempfile.mkdtemp(prefix="edgeagent-drift-squid-"))
    os.chmod(base, 0o755)  # Squid's helper (user proxy) reads the index below
    try:
        agent, proxy_port = squid_canary_agent(base, INTERVAL)
        readyz = f"http://{HOST}:{agent.metrics_port}/readyz"

        def failing() -> list[str]:
            code, body = http_json("GET", readyz)
            return [] if code == 200 else [r for r in body["reasons"] if "proxy canary" in r]

        def canary_ok() -> float:
            _, text = http_json("GET", f"http://{HOST}:{agent.metrics_port}/metrics")
            found = re.search(r"edgeagent_proxy_canary_ok\{[^}]*\} (\S+)", text)
            return float(found.group(1)) if found else -1.0

        with running_agent(agent.config, agent.metrics_port, base / "agent.log"):
            squid = start_agent_squid(base, agent, proxy_port)
            try:
                wait_for("the proxy canary to pass", lambda: canary_ok() == 1.0, 6 * INTERVAL)
                shipped = squid.conf.read_text(encoding="utf-8")
                # Someone drops the per-URL rules (Squid no longer asks the helper) and
                # reloads Squid: the config parses, Squid serves, nothing is refused.
                edited = "".join(
                    line
                    for line in shipped.splitlines(keepends=True)
                    if not line.startswith("adapted_http_access deny")
                )
                assert edited != shipped
                squid.conf.write_text(edited, encoding="utf-8")
                os.kill(squid.proc.pid, signal.SIGHUP)  # squid -N: reconfigure
                changed = time.monotonic()
                reasons = wait_for("/readyz to name the proxy", failing, 4 * INTERVAL)
                detected = time.monotonic() - changed
                assert reasons == [f"proxy canary failing at {HOST}:{proxy_port}"], reasons
                assert canary_ok() == 0.0

                squid.conf.write_text(shipped, encoding="utf-8")
                os.kill(squid.proc.pid, signal.SIGHUP)
                restored = time.monotonic()
                wait_for("the canary to pass again", lambda: not failing(), 4 * INTERVAL)
                recovery = time.monotonic() - restored
            finally:
                squid.stop()
        record(
            "faults",
            "drift-squid",
            {
                "detected_seconds": round(detected, 1),
                "recovery_seconds": round(recovery, 1),
                "interval_seconds": INTERVAL,
            },
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
