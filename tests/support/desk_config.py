"""The config of a daemon at the NTD desk, shared by the tests that walk whole cases.

:func:`desk_config` writes ``edgeagent.toml`` for ``edgeagent run`` with what a day's
cases need: a police list (local file, law enforcement), the proxy index (the stop
page's appeal references), the public report and appeal pages, and takedown with
customers from a CSV export, hosts resolved by the peers' Unbound and notices to the
peers' SMTP and webhook sinks (:func:`tests.support.segment_peers.running`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.segment_peers import smtp_notifier_toml

OWN = "198.51.100"  # the ISP's own space in these tests; customers are in it
HOSTING = "hosting@isp.example"  # the hosting team: the only address a hold lets through


def desk_config(
    tmp: Path,
    peers: dict[str, Any],
    ports: dict[str, int],
    secret: Path,
    customers: str,
    *,
    appeal_url: str | None = None,
) -> Path:
    """Write the config (and its customer export and police list) under ``tmp``.

    ``ports`` names the ``api``, ``metrics``, ``stop`` and ``pages`` listeners;
    ``secret`` is the webhook's HMAC key file; ``appeal_url`` is where the stop page
    sends an appeal (the pages' own address when omitted).
    """
    (tmp / "customers.csv").write_text(customers, encoding="utf-8")
    (tmp / "police-list.txt").write_text("worst.example\n", encoding="utf-8")
    appeal = f'appeal_url = "{appeal_url}"\n' if appeal_url else ""
    config = tmp / "edgeagent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{tmp / "state"}"
log_format = "json"
time_zone = "Europe/Berlin"
[api]
port = {ports["api"]}
[metrics]
port = {ports["metrics"]}
[guard]
change_floor = 0
[feeds.police]
kind = "domain-list"
path = "{tmp / "police-list.txt"}"
source = "law-enforcement"
[rpz]
proxy_ipv4 = "192.0.2.80"
[proxy]
enabled = true
index_path = "{tmp / "proxy" / "proxy-index.bin"}"
stop_page_listen_port = {ports["stop"]}
{appeal}[intake]
enabled = true
port = {ports["pages"]}
notify_via = "hosting-mail"
[takedown]
enabled = true
own_prefixes = ["{OWN}.0/24"]
resolvers = [{{ host = "127.0.0.1", port = {peers["dns_port"]} }}]
require_authorisation_for = ["DE"]
referral_recipients = {{ example-hotline = "Example Hotline", example-agency = "Example Agency" }}
[[takedown.customers]]
kind = "csv"
path = "{tmp / "customers.csv"}"
{smtp_notifier_toml("hosting-mail", peers, HOSTING)}[takedown.notifiers.ticket-hook]
kind = "webhook"
hosting_team = false  # a ticket system other teams read
url = "{peers["webhook_url"]}"
secret_file = "{secret}"
""",
        encoding="utf-8",
    )
    return config
