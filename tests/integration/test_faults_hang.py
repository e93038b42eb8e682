"""Peers that hang (accept, never answer) under a running agent, then come back.

A hung peer is a stopped process (SIGSTOP): the kernel still takes its TCP connections
and queues its UDP datagrams, nobody answers. Real components: the shipped hidden
primary ``named`` (``named.conf.rpz-primary-unbound``) the agent UPDATEs, one BIND
secondary and one Unbound resolver it feeds, and ``edgeagent run``.

- The hidden primary hangs while a decision is made: the decision is answered at once,
  the publish times out and is retried with backoff and jitter (retries and the next
  wait in the metrics, ``/readyz`` names the version not enforced yet), the API keeps
  answering fast; when the primary answers again the decision is published with no new
  decision and every resolver serves it.
- A resolver hangs: publishing is not held up, the resolver is reported unreachable
  (``/v1/fleet``, the metrics, ``/readyz`` past the grace period); when it answers again
  it serves the current serial and readiness clears.
- Squid (the shipped config, helper over the agent's index) hangs: the proxy canary
  fails (``edgeagent_proxy_canary_ok``, ``/readyz``), the API keeps its pace; when Squid
  answers again the canary passes and readiness clears.

Each test records how long recovery took into ``var/reliability/faults.json``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeagent.lab.daemons import HOST
from edgeagent.rpz.publishers.base import ResolverTarget, query_all
from tests.support.agent import create_token, http_json, running_agent
from tests.support.api import decision_body
from tests.support.binaries import require_binary
from tests.support.faults import (
    api_latencies,
    hung,
    p99,
    squid_canary_agent,
    start_agent_squid,
)
from tests.support.figures import record
from tests.support.polling import wait_for
from tests.support.resolvers import AgentFleet, agent_fleet

pytestmark = pytest.mark.integration

CANARY = "canary.edgeagent.example"
GRACE = 5  # rpz serial_grace_seconds and verify_interval_seconds (agent_fleet)
HANG_SECONDS = 12


class Env(AgentFleet):
    """The running fleet, with what the tests ask of it."""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = self.analyst if method == "POST" else self.noc
        return http_json(method, f"{self.api}{path}", token, body)

    def primary_serial(self) -> int | None:
        code, body = self.call("GET", "/v1/status")
        assert code == 200, body
        serial: int | None = body["publishers"]["rpz"]["publishers"]["hidden-primary"]["serial"]
        return serial

    def fleet(self) -> dict[str, Any]:
        code, body = self.call("GET", "/v1/fleet")
        assert code == 200, body
        result: dict[str, Any] = body
        return result

    def serials(self) -> set[int | None]:
        targets = [ResolverTarget(n, HOST, d.port) for n, d in self.resolvers.items()]
        return {r.serial for r in query_all(targets, CANARY, 0.5)}

    def readyz(self) -> tuple[int, list[str]]:
        code, body = http_json("GET", f"{self.metrics}/readyz")
        return code, list(body.get("reasons", [])) if isinstance(body, dict) else []

    def metric(self, line_start: str) -> float:
        _, text = http_json("GET", f"{self.metrics}/metrics")
        for line in str(text).splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
        raise AssertionError(f"no metric {line_start}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    names = ["bind-00", "unbound-00"]
    with agent_fleet(tmp_path_factory.mktemp("hang"), names, CANARY) as running:
        e = Env(**vars(running))
        serial = wait_for("the first publish", e.primary_serial, 20)
        wait_for("every resolver at the first serial", lambda: e.serials() == {serial}, 30)
        wait_for("ready", lambda: e.readyz()[0] == 200, 30)
        yield e


def test_a_hanging_primary_is_retried_and_the_decision_published_when_it_answers(
    env: Env,
) -> None:
    before = env.primary_serial()
    baseline = api_latencies(env.api, env.noc, 2)
    with hung(env.primary.proc.pid):
        started = time.monotonic()
        code, body = env.call("POST", "/v1/decisions", decision_body("hang-one.example"))
        answered = time.monotonic() - started
        assert code == 201, body
        assert answered < 1.0, f"the decision took {answered:.2f} s with the primary hung"
        wait_for(
            "the publish to time out and wait for a retry",
            lambda: env.fleet()["enforcers"]["rpz"]["pending_version"],
            15,
        )
        during = api_latencies(env.api, env.noc, HANG_SECONDS)
        convergence = env.fleet()["enforcers"]["rpz"]
        assert convergence["retries"] >= 2, convergence
        assert convergence["next_retry_seconds"] is not None, convergence
        code, reasons = env.readyz()
        assert code == 503
        assert any("not enforced yet" in r for r in reasons), reasons
        retries = env.metric('edgeagent_enforcer_publish_retries_total{enforcer="rpz"}')
        assert retries >= 2
        assert env.metric('edgeagent_enforcer_retry_delay_seconds{enforcer="rpz"}') > 0
        assert env.primary_serial() == before
        continued = time.monotonic()
    serial = wait_for(
        "the retried publish (no new decision)",
        lambda: (s := env.primary_serial()) != before and s,
        90,
    )
    wait_for("every resolver at the new serial", lambda: env.serials() == {serial}, 30)
    wait_for("ready again", lambda: env.readyz()[0] == 200, 30)
    recovery = time.monotonic() - continued
    assert env.fleet()["enforcers"]["rpz"]["pending_version"] is None
    # A retry for resolvers still behind right after the publish may be due: it lapses.
    wait_for(
        "no retry due",
        lambda: env.metric('edgeagent_enforcer_retry_delay_seconds{enforcer="rpz"}') == 0,
        30,
    )
    # The API kept its pace: a hung peer costs the callers nothing.
    assert p99(during) < max(0.5, 5 * p99(baseline)), (p99(baseline), p99(during))
    record(
        "faults",
        "hang-primary",
        {
            "hang_seconds": round(continued - started, 1),
            "retries": int(retries),
            "api_p99_ms_before": round(p99(baseline) * 1000, 1),
            "api_p99_ms_during": round(p99(during) * 1000, 1),
            "recovery_seconds": round(recovery, 1),
        },
    )


def test_a_hanging_resolver_is_reported_and_catches_up_when_it_answers(env: Env) -> None:
    resolver = env.resolvers["bind-00"]
    before = env.primary_serial()
    baseline = api_latencies(env.api, env.noc, 2)
    with hung(resolver.proc.pid):
        started = time.monotonic()
        code, body = env.call("POST", "/v1/decisions", decision_body("hang-two.example"))
        assert code == 201, body
        serial = wait_for(
            "the primary to accept the decision",
            lambda: (s := env.primary_serial()) != before and s,
            5,
        )
        accepted = time.monotonic() - started
        assert accepted < 2.0, f"publishing took {accepted:.2f} s with a resolver hung"

        def unready() -> list[str] | None:
            code, reasons = env.readyz()
            return reasons if code == 503 else None

        reasons = wait_for("/readyz to name the hung resolver", unready, 4 * GRACE)
        assert any(r.startswith("resolver bind-00 unreachable") for r in reasons), reasons
        members = {m["name"]: m for m in env.fleet()["members"]}
        assert members["bind-00"]["reachable"] is False
        assert members["unbound-00"]["reachable"] is True
        assert env.metric('edgeagent_rpz_resolver_reachable{resolver="bind-00"}') == 0
        during = api_latencies(env.api, env.noc, 5)
        continued = time.monotonic()
    wait_for("the resolver at the current serial", lambda: env.serials() == {serial}, 30)
    wait_for("ready again", lambda: env.readyz()[0] == 200, 4 * GRACE)
    recovery = time.monotonic() - continued
    assert env.metric('edgeagent_rpz_resolver_reachable{resolver="bind-00"}') == 1
    assert p99(during) < max(0.5, 5 * p99(baseline)), (p99(baseline), p99(during))
    record(
        "faults",
        "hang-resolver",
        {
            "publish_seconds": round(accepted, 1),
            "api_p99_ms_before": round(p99(baseline) * 1000, 1),
            "api_p99_ms_during": round(p99(during) * 1000, 1),
            "recovery_seconds": round(recovery, 1),
        },
    )


def test_a_hanging_squid_fails_the_proxy_canary_and_passes_it_when_it_answers() -> None:
    require_binary("squid")
    base = Path(tempfile.mkdtemp(prefix="edgeagent-hang-squid-"))
    os.chmod(base, 0o755)  # Squid's helper (user proxy) reads the index below
    (base / "proxy").mkdir(mode=0o755)
    try:
        agent, proxy_port = squid_canary_agent(base, GRACE)
        noc = create_token(agent.config, "noc", "hang-noc")
        readyz = f"http://{HOST}:{agent.metrics_port}/readyz"

        def reasons() -> list[str]:
            code, body = http_json("GET", readyz)
            return [] if code == 200 else list(body["reasons"])

        with running_agent(agent.config, agent.metrics_port, base / "agent.log"):
            squid = start_agent_squid(base, agent, proxy_port)
            try:
                wait_for("the proxy canary to pass", lambda: not reasons(), 6 * GRACE)
                baseline = api_latencies(agent.api, noc, 1)
                with hung(squid.proc.pid):
                    stopped = time.monotonic()
                    failing = wait_for(
                        "/readyz to name the hung proxy",
                        lambda: [r for r in reasons() if r.startswith("proxy canary failing")],
                        6 * GRACE,
                    )
                    detected = time.monotonic() - stopped
                    during = api_latencies(agent.api, noc, 2)
                    continued = time.monotonic()
                wait_for("the proxy canary to pass again", lambda: not reasons(), 6 * GRACE)
                recovery = time.monotonic() - continued
            finally:
                squid.stop()
        assert failing == [f"proxy canary failing at {HOST}:{proxy_port}"], failing
        assert p99(during) < max(0.5, 5 * p99(baseline)), (p99(baseline), p99(during))
        record(
            "faults",
            "hang-squid",
            {
                "detected_seconds": round(detected, 1),
                "api_p99_ms_before": round(p99(baseline) * 1000, 1),
                "api_p99_ms_during": round(p99(during) * 1000, 1),
                "recovery_seconds": round(recovery, 1),
                "interval_seconds": GRACE,
            },
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
