"""Test support: helpers the tests import, one module per job.

- :mod:`tests.support.ports`: free loopback ports;
- :mod:`tests.support.binaries`: external programs a test needs (fail, never skip);
- :mod:`tests.support.polling`: waiting for what a daemon does in its own time;
- :mod:`tests.support.pki`: a throwaway CA and certificates;
- :mod:`tests.support.api`: the control API in-process, tokens per role, decision bodies;
- :mod:`tests.support.agent`: the agent daemon (``edgeagent run``) as a process;
- :mod:`tests.support.resolvers`: DNS daemons around :mod:`edgeagent.lab.resolvers`;
- :mod:`tests.support.squid`: Squid, the origin and stop page behind it, raw clients;
- :mod:`tests.support.spellings`: request targets that spell a listed page, and siblings;
- :mod:`tests.support.netns`: the client/proxy/origin namespaces of the route tests;
- :mod:`tests.support.segment_netns`: the agent/server namespaces of the on-segment
  takedown tests; :mod:`tests.support.segment_peers` runs their DNS, SMTP and webhook peers;
- :mod:`tests.support.feedserver`: a feed server that misbehaves on demand;
- :mod:`tests.support.webapps`: aiohttp apps on a background event loop;
- :mod:`tests.support.samples`: the sample feeds and the result annotated per line;
- :mod:`tests.support.tickets`: takedown tickets to start from, the ticket-store contract;
- :mod:`tests.support.store_contract`: what every store backend does (SQLite, PostgreSQL);
- :mod:`tests.support.postgres`: a test's own PostgreSQL database;
- :mod:`tests.support.alert_rules`: the alert rules, the dashboard, the metric contract;
- :mod:`tests.support.fuzzing`: fuzz budgets, hostile strategies, the figures of the
  hostile-input tests (a plugin: example counts per target at the end of a run);
- :mod:`tests.support.full_api`: the control API with every route table the daemon serves.

Fixtures are not here: they live in the ``conftest.py`` files. Support code may import
:mod:`edgeagent`, never a test module; ``bench/`` imports nothing from ``tests/``; what
both need (daemon launchers, the API-only server) is in :mod:`edgeagent.lab`.
"""
