"""Drift under the running daemon: the zone file and the proxy index changed behind its
back are found by the next verify pass (``verify_interval_seconds`` = 5) and written
again from the current state, with a new serial for the zone; each repair counts
``edgeagent_drift_repairs_total{artefact}``. Routes: see ``test_daemon_routes``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.agent import create_token, http_json, running_agent
from tests.support.faults import decision, index_ok, zone_serial, zonefile_agent
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
            publishers = http_json("GET", f"{api}/v1/status", token)[1]["publishers"]
            version = publishers["proxy-index"]["published_version"]
            return version is not None and version == publishers["rpz"]["policy_version"]

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
