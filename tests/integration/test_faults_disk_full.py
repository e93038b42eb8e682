"""Disk full under the running daemon: the state dir (SQLite store), the zone files and
the proxy index live on a small tmpfs the test fills.

While full: a write the API cannot make answers 503 ``storage-full`` with the reason
(never 500), a wrong token is still 401 though its audit row cannot be written,
``/readyz`` says why it is not ready, reads keep working, and the zone file and proxy
index in force stay complete (the old ones). Once space returns the daemon is ready again
by itself and the next decision is stored and published.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.agent import create_token, http_json, running_agent
from tests.support.faults import ZONE, decision, fill, index_ok, tmpfs, zone_serial
from tests.support.figures import record
from tests.support.polling import wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


def test_disk_full_answers_503_stays_up_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "6m") as disk:
        api_port, metrics_port = free_port(udp=False), free_port(udp=False)
        zones, state = disk / "zones", disk / "state"
        zones.mkdir()
        config = tmp_path / "edgeagent.toml"
        config.write_text(
            f'[agent]\nstate_dir = "{state}"\nlog_format = "json"\n'
            f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
            f'[publishers.files]\nkind = "zonefile"\ndirectory = "{zones}"\n'
            f'[proxy]\nenabled = true\nindex_path = "{disk / "proxy" / "index.bin"}"\n'
            f"stop_page_listen_port = {free_port(udp=False)}\n"
        )
        token = create_token(config, "analyst", "ana")
        api, readyz = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}/readyz"
        zone, index = zones / f"{ZONE}.zone", disk / "proxy" / "index.bin"

        with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
            status, _ = http_json("POST", f"{api}/v1/decisions", token, decision("one.example"))
            assert status == 201
            status, _ = http_json(
                "POST", f"{api}/v1/decisions", token, decision("page.example", "url")
            )
            assert status == 201
            wait_for(
                "the first zone", lambda: zone.exists() and "one.example" in zone.read_text(), 20
            )
            wait_for("the proxy index", index.exists, 20)
            live_serial = zone_serial(zone)

            filler = fill(disk)
            answers = []
            for i in range(40):  # SQLite may still fit a few rows in its WAL
                status, body = http_json(
                    "POST", f"{api}/v1/decisions", token, decision(f"full{i}.example")
                )
                answers.append(status)
                if status == 503:
                    break
            assert set(answers) <= {201, 503}, answers
            assert answers[-1] == 503, answers
            assert body["error"]["code"] == "storage-full"
            assert "disk full" in body["error"]["message"]

            status, _ = http_json("GET", f"{api}/v1/decisions", "wrong-token")
            assert status == 401
            status, ready = http_json("GET", readyz)
            assert status == 503
            assert any("disk full" in r for r in ready["reasons"]), ready
            status, _ = http_json("GET", f"{api}/v1/decisions", token)
            assert status == 200  # still serving
            assert zone_serial(zone) >= live_serial  # complete: the old one or a newer one
            assert index_ok(index)
            _, metrics = http_json("GET", f"http://127.0.0.1:{metrics_port}/metrics")
            assert 'edgeagent_store_unavailable_total{reason="storage-full"}' in metrics

            filler.unlink()
            freed = time.monotonic()
            wait_for("ready again", lambda: http_json("GET", readyz)[0] == 200, 30)
            recovery = time.monotonic() - freed
            status, _ = http_json("POST", f"{api}/v1/decisions", token, decision("back.example"))
            assert status == 201
            wait_for("the new zone", lambda: "back.example" in zone.read_text(), 20)
            assert zone_serial(zone) > live_serial
            assert index_ok(index)
            print(f"disk full: 503 after {len(answers)} writes; ready again {recovery:.1f} s")
            record(
                "faults",
                "disk-full",
                {"writes_until_503": len(answers), "recovery_seconds": round(recovery, 1)},
            )
            assert proc.poll() is None
