"""DatabaseStatus: what "synchronous" means, its JSON form, and the gauges set from it."""

from __future__ import annotations

from prometheus_client import generate_latest

from edgeagent.metrics import Metrics
from edgeagent.store.base import DatabaseStatus, StandbyStatus

SYNC = StandbyStatus("pgautofailover_standby_2", "streaming", True, 0.004, 0)
ASYNC = StandbyStatus("async_1", "streaming", False, 1.5, 4096)


def test_synchronous_needs_a_synchronous_standby_and_synchronous_commit() -> None:
    assert DatabaseStatus("postgresql", synchronous_commit="on", standbys=(SYNC,)).synchronous
    assert not DatabaseStatus("postgresql", synchronous_commit="on", standbys=(ASYNC,)).synchronous
    assert not DatabaseStatus(
        "postgresql", synchronous_commit="local", standbys=(SYNC,)
    ).synchronous
    assert not DatabaseStatus("postgresql", synchronous_commit="on").synchronous
    assert not DatabaseStatus("sqlite").synchronous


def test_json_form() -> None:
    status = DatabaseStatus(
        "postgresql", primary="127.0.0.1:5432", synchronous_commit="on", standbys=(SYNC,)
    )
    assert status.to_dict() == {
        "backend": "postgresql",
        "reachable": True,
        "error": None,
        "primary": "127.0.0.1:5432",
        "synchronous": True,
        "synchronous_commit": "on",
        "standbys": [
            {
                "name": "pgautofailover_standby_2",
                "state": "streaming",
                "synchronous": True,
                "replay_lag_seconds": 0.004,
                "replay_lag_bytes": 0,
            }
        ],
    }
    down = DatabaseStatus("postgresql", reachable=False, error="store.dsn: cannot reach")
    assert down.to_dict()["error"] == "store.dsn: cannot reach"


def _value(metrics: Metrics, line_start: str) -> str | None:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start):
            return line.split()[-1]
    return None


def test_gauges_follow_the_primary_and_keep_it_while_unreachable() -> None:
    metrics = Metrics()
    first = DatabaseStatus(
        "postgresql", primary="127.0.0.1:5001", synchronous_commit="on", standbys=(SYNC, ASYNC)
    )
    metrics.observe_database(first)
    assert _value(metrics, "edgeagent_database_up ") == "1.0"
    assert _value(metrics, 'edgeagent_database_primary{address="127.0.0.1:5001"}') == "1.0"
    assert _value(metrics, "edgeagent_database_synchronous ") == "1.0"
    assert _value(metrics, 'edgeagent_database_replication_lag_seconds{standby="async_1"}') == "1.5"
    assert (
        _value(metrics, 'edgeagent_database_replication_lag_bytes{standby="async_1"}') == "4096.0"
    )
    metrics.observe_database(DatabaseStatus("postgresql", reachable=False, error="down"))
    assert _value(metrics, "edgeagent_database_up ") == "0.0"
    assert _value(metrics, 'edgeagent_database_primary{address="127.0.0.1:5001"}') == "1.0"
    metrics.observe_database(DatabaseStatus("postgresql", primary="127.0.0.1:5002"))
    assert _value(metrics, 'edgeagent_database_primary{address="127.0.0.1:5001"}') is None
    assert _value(metrics, 'edgeagent_database_primary{address="127.0.0.1:5002"}') == "1.0"
    assert _value(metrics, "edgeagent_database_synchronous ") == "0.0"
    assert _value(metrics, "edgeagent_database_replication_lag_seconds{") is None
