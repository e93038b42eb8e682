"""``edgeagent lab --ha``: the PostgreSQL pair under each failover engine (``--ha-engine``:
pg_auto_failover, Patroni on etcd) and two agents on it.

The lab runs as a subprocess in its own session, as a newcomer starts it. ``lab.json``
names both APIs (the first is ``api``) and the database's primary and standby; a decision
recorded through the second agent is seen by the first and enforced at the lab's BIND
secondary (whichever agent leads publishes it to the one hidden primary, which both are
configured with: no zone directory of the second agent's own); both report the same
primary, with a synchronous standby; SIGTERM stops everything and removes the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from edgeagent.lab.pgha import ENGINES
from tests.support.agent import http_json
from tests.support.binaries import require_binary
from tests.support.faults import decision
from tests.support.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_TIMEOUT = 180.0
ENGINE_PROGRAMS = {"pg_auto_failover": ("pg_autoctl",), "patroni": ("patroni", "etcd")}


@pytest.mark.parametrize("engine", ENGINES)
def test_lab_ha_two_agents_on_one_replicated_database(engine: str) -> None:
    for program in ("named", "unbound", "squid", *ENGINE_PROGRAMS[engine]):
        require_binary(program)
    base = Path(tempfile.mkdtemp(prefix="edgeagent-lab-ha-"))
    base.chmod(0o711)  # Squid's helper and PostgreSQL (other users) must traverse it
    directory = base / "lab"
    out = (base / "lab.out").open("wb")
    argv = [sys.executable, "-m", "edgeagent.cli", "lab", "--ha", "--ha-engine", engine]
    proc = subprocess.Popen(
        [*argv, "--dir", str(directory)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    try:

        def ready() -> dict[str, object] | None:
            if proc.poll() is not None:
                log = (base / "lab.out").read_text(errors="replace")
                raise AssertionError(f"lab exited {proc.returncode}:\n{log[-4000:]}")
            path = directory / "lab.json"
            return json.loads(path.read_text()) if path.exists() else None

        info = wait_for("lab.json", ready, START_TIMEOUT)
        apis, database, tokens = info["apis"], info["database"], info["tokens"]
        assert isinstance(apis, list)
        assert isinstance(database, dict)
        assert isinstance(tokens, dict)
        assert len(apis) == 2
        assert apis[0] == info["api"]
        assert database.keys() == {"engine", "primary", "standby"}
        assert database["engine"] == engine
        assert database["primary"] != database["standby"]

        status, body = http_json(
            "POST", f"{apis[1]}/v1/decisions", tokens["analyst"], decision("ha-lab.example")
        )
        assert status == 201, body
        status, found = http_json(
            "GET", f"{apis[0]}/v1/decisions?reference=CASE-ha-lab.example", tokens["analyst"]
        )
        assert status == 200, found
        assert [d["id"] for d in found["items"]] == [body["id"]]
        leaders = []
        for api in apis:
            status, state = http_json("GET", f"{api}/v1/status", tokens["noc"])
            assert status == 200, state
            assert state["database"]["primary"] == database["primary"]
            assert state["database"]["synchronous"] is True
            assert "hidden-primary" in state["publishers"]["rpz"]["publishers"]
            leaders.append(state["leader"])
        assert sorted(leaders) == [False, True]
        assert not (directory / "agent2" / "zones").exists()
        resolvers = info["resolvers"]
        assert isinstance(resolvers, list)
        (bind,) = [r for r in resolvers if r["name"] == "bind-secondary"]
        query = dns.message.make_query("ha-lab.example", dns.rdatatype.A)

        def blocked() -> bool:
            # A busy machine may leave one query unanswered: ask again.
            try:
                answer = dns.query.udp(query, bind["host"], port=bind["port"], timeout=2)
            except dns.exception.Timeout:
                return False
            return answer.rcode() == dns.rcode.NXDOMAIN

        wait_for("the decision enforced at the BIND secondary", blocked, 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        stopped_cleanly = not directory.exists()
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode == 0, proc.returncode
    assert stopped_cleanly
