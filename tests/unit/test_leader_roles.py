"""The leader and each agent's role as the store knows them, in ``/v1/status``'s ``ha``
and in the metrics, by agent id (never a list entry). The embedded store here; the same
on PostgreSQL in ``tests/integration/test_leader_fencing.py``."""

from __future__ import annotations

from pathlib import Path

from edgeagent.config import default_settings
from edgeagent.leadership import AgentRole, Roles
from edgeagent.metrics import Metrics
from edgeagent.store import open_leadership


async def test_the_agent_on_an_embedded_store_is_named_as_its_leader(tmp_path: Path) -> None:
    settings = default_settings(tmp_path / "state")
    leadership = open_leadership(settings.store, settings.agent.state_dir)
    told: list[bool] = []
    await leadership.run(told.append, lambda: None, "http://127.0.0.1:9630")
    assert told == [True]

    roles = leadership.roles()
    (me,) = roles.agents
    assert (roles.leader, me.leader, me.api) == (me.name, True, "http://127.0.0.1:9630")
    ha = leadership.status()
    assert ha["leader"] == ha["name"] == me.name
    assert [a["name"] for a in ha["agents"]] == [me.name]

    metrics = Metrics()
    metrics.observe_roles(roles)
    sample = metrics.registry.get_sample_value
    assert sample("edgeagent_ha_leader_info", {"agent": me.name}) == 1.0
    assert sample("edgeagent_ha_agent_role", {"agent": me.name, "role": "leader"}) == 1.0
    assert sample("edgeagent_ha_agents", {"status": "standby"}) == 0.0


def test_agents_no_longer_heard_from_leave_the_metrics() -> None:
    metrics = Metrics()
    metrics.observe_roles(
        Roles("central-1:10", (AgentRole("central-1:10", True), AgentRole("central-2:20", False)))
    )
    metrics.observe_roles(Roles("central-2:20", (AgentRole("central-2:20", True),)))
    sample = metrics.registry.get_sample_value
    assert sample("edgeagent_ha_leader_info", {"agent": "central-1:10"}) is None
    assert sample("edgeagent_ha_leader_info", {"agent": "central-2:20"}) == 1.0
    assert sample("edgeagent_ha_agent_role", {"agent": "central-1:10", "role": "leader"}) is None
    assert sample("edgeagent_ha_agent_role", {"agent": "central-2:20", "role": "standby"}) is None
    assert sample("edgeagent_ha_agent_role", {"agent": "central-2:20", "role": "leader"}) == 1.0
    assert sample("edgeagent_ha_agents", {"status": "leader"}) == 1.0
