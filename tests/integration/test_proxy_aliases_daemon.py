"""IP-literal aliases in the running daemon: a url decision's host is resolved through a
real Unbound (``[proxy] alias_resolvers``) in the background, the ``ip-aliases`` job
writes the alias into the index at the same policy version, and a revoke takes it out
again. The host and its address appear nowhere in the log or the metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeagent.lab.resolvers import unbound_server
from edgeagent.proxy.index import IndexReader
from tests.support.agent import create_token, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

HOST = "gallery.alias.test"
ADDRESS = "198.51.100.23"
PAGE = f"http://{HOST}/listed/page.html"


def _listed(index: Path, url: str) -> bool:
    try:
        with IndexReader.open(index) as reader:
            return reader.match(url) is not None
    except OSError:
        return False


def _until(check: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def test_a_decision_gets_its_alias_and_a_revoke_takes_it(tmp_path: Path) -> None:
    require_binary("unbound")
    api_port, metrics_port, page_port = (free_port(udp=False) for _ in range(3))
    index = tmp_path / "proxy" / "index.bin"
    log = tmp_path / "daemon.log"
    with unbound_server([(HOST, "A", ADDRESS)], zones=("alias.test",)) as (dns_host, dns_port):
        config = tmp_path / "edgeagent.toml"
        config.write_text(
            f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
            f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
            f'[proxy]\nenabled = true\nindex_path = "{index}"\n'
            f"stop_page_listen_port = {page_port}\n"
            f'alias_resolvers = [{{ host = "{dns_host}", port = {dns_port} }}]\n'
        )
        supervisor = create_token(config, "supervisor", "sue")  # decides and revokes
        api = f"http://127.0.0.1:{api_port}"
        alias = f"http://{ADDRESS}/listed/page.html"
        with running_agent(config, metrics_port, log):
            status, made = http_json(
                "POST",
                f"{api}/v1/decisions",
                supervisor,
                {
                    "target": PAGE,
                    "scope": "url",
                    "action": "block",
                    "reason": "hotline report",
                    "reference": "CASE-9",
                    "source": "hotline",
                },
            )
            assert status == 201, made
            _until(lambda: _listed(index, alias), "the alias in the index")
            assert not _listed(index, f"http://{ADDRESS}/listed/other.html")
            _, metrics = http_json("GET", f"http://127.0.0.1:{metrics_port}/metrics")
            assert "edgeagent_proxy_ip_aliases 1.0" in metrics
            assert "edgeagent_proxy_alias_hosts_unresolved 0.0" in metrics
            _, st = http_json("GET", f"{api}/v1/status", supervisor)
            aliases = st["publishers"]["proxy-index"]["ip_aliases"]
            assert (aliases["hosts"], aliases["aliases"]) == (1, 1), aliases
            status, _ = http_json(
                "POST", f"{api}/v1/decisions/{made['id']}/revoke", supervisor, {"reason": "x"}
            )
            assert status == 200
            _until(lambda: not _listed(index, alias), "the alias gone with the decision")
            assert not _listed(index, PAGE)
    for text in (log.read_text(), metrics):
        assert HOST not in text
        assert ADDRESS not in text
