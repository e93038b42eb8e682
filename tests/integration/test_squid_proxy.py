"""A real Squid with the shipped config and the helper, an aiohttp origin, the stop page."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.lab.daemons import HOST
from edgeagent.lab.proxy import RunningSquid, render_squid_conf
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.canary import proxy_canary
from edgeagent.proxy.indexwriter import write_index
from edgeagent.proxy.pathfilter import filter_path, write_path_filter
from tests.support.binaries import require_binary
from tests.support.squid import Servers, raw_get, start_squid

pytestmark = pytest.mark.integration

SITE = "mixed.site.test"
CANARY = "http://canary.edgeagent.example/edgeagent-canary"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Servers, RunningSquid, Path]]:
    require_binary("squid")
    servers = Servers()
    work = Path(tempfile.mkdtemp(prefix="edgeagent-squid-"))
    os.chmod(work, 0o755)
    index = work / "proxy-index.bin"
    port = servers.origin_port
    state = DesiredState(
        1,
        (
            Entry(
                Indicator.parse("url", f"http://{SITE}/gallery/listed.html"), Action.BLOCK, "iwf"
            ),
            Entry(Indicator.parse("url", CANARY), Action.BLOCK, "decision:1"),
            Entry(Indicator.parse("domain", "whole.domain.test"), Action.BLOCK, "iwf"),
        ),
        (),
    )
    write_path_filter(state, filter_path(index), group="proxy")
    write_index(state, index, group="proxy")
    hosts = {SITE: HOST, "unlisted.site.test": HOST, "canary.edgeagent.example": HOST}
    squid = start_squid(work / "squid", index, f"http://{HOST}:{servers.stop_port}", hosts)
    try:
        yield servers, squid, work
    finally:
        squid.stop()
        servers.close()
        assert port > 0
        shutil.rmtree(work, ignore_errors=True)


SPELLINGS = [
    "http://{site}:{port}/gallery/listed.html",
    "http://MIXED.Site.TEST:{port}/gallery/listed.html",
    "http://{site}:{port}/%67allery/listed%2Ehtml",
    "http://{site}.:{port}/gallery/listed.html",
    "http://{site}:{port}/gallery/./listed.html",
    "http://{site}:{port}//gallery//listed.html",
    "http://{site}:80/gallery/listed.html",
    "http://{site}/gallery/listed.html",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_listed_page_is_refused_in_every_spelling_explicit_proxy(
    env: tuple[Servers, RunningSquid, Path], spelling: str
) -> None:
    servers, squid, _ = env
    target = spelling.format(site=SITE, port=servers.origin_port)
    status, headers, _ = raw_get(squid.proxy_port, target)
    assert status == 302, target
    assert headers["location"] == f"http://{HOST}:{servers.stop_port}/blocked?source=iwf"


@pytest.mark.parametrize(
    "path", ["/gallery/listed.html", "/gallery/./listed.html", "//gallery/listed%2Ehtml"]
)
def test_listed_page_is_refused_for_diverted_origin_form_requests(
    env: tuple[Servers, RunningSquid, Path], path: str
) -> None:
    servers, squid, _ = env
    status, headers, _ = raw_get(squid.accel_port, path, host=f"{SITE}:{servers.origin_port}")
    assert status == 302
    assert "source=iwf" in headers["location"]
    assert "listed" not in headers["location"]  # no URL handed to the stop page


@pytest.mark.parametrize("via", ["proxy", "accel"])
def test_sibling_page_and_unlisted_host_reach_the_origin(
    env: tuple[Servers, RunningSquid, Path], via: str
) -> None:
    servers, squid, _ = env
    p = servers.origin_port
    for host, path in (
        (SITE, "/gallery/sibling.html"),
        ("unlisted.site.test", "/gallery/listed.html"),
    ):
        if via == "proxy":
            status, _, body = raw_get(squid.proxy_port, f"http://{host}:{p}{path}")
        else:
            status, _, body = raw_get(squid.accel_port, path, host=f"{host}:{p}")
        assert status == 200, body
        assert body.startswith(f"origin {host} {path}")
        assert "xff=127.0.0.1" in body  # forwarded_for on: origins see the client


def test_stop_page_through_the_redirect(env: tuple[Servers, RunningSquid, Path]) -> None:
    servers, squid, _ = env
    status, headers, _ = raw_get(
        squid.proxy_port, f"http://{SITE}:{servers.origin_port}/gallery/listed.html"
    )
    status, headers, body = raw_get(
        servers.stop_port, headers["location"].split(str(servers.stop_port), 1)[1]
    )
    assert status == 451
    assert 'rel="blocked-by"' in headers["link"]
    assert "child sexual abuse material" in body
    assert "the Example Hotline" in body
    assert "iwf" in servers.hits


@pytest.mark.parametrize("via", ["proxy", "accel"])
def test_whole_domain_is_refused_for_plain_http(
    env: tuple[Servers, RunningSquid, Path], via: str
) -> None:
    """Host-level entries: the cached per-host ACL, no per-URL question needed."""
    servers, squid, _ = env
    host = f"www.whole.domain.test:{servers.origin_port}"
    if via == "proxy":
        status, headers, _ = raw_get(squid.proxy_port, f"http://{host}/any/page.html")
    else:
        status, headers, _ = raw_get(squid.accel_port, "/any/page.html", host=host)
    assert status == 302
    assert headers["location"].endswith("/blocked?source=iwf")


def test_prefilter_loaded_the_path_filter(env: tuple[Servers, RunningSquid, Path]) -> None:
    servers, squid, _ = env
    raw_get(squid.proxy_port, f"http://{SITE}:{servers.origin_port}/gallery/sibling.html")
    # The listed page and the canary: two url keys; the domain entry is host-level.
    assert "edgeagent prefilter: path filter loaded: 2 keys" in squid.log_text()


def test_connect_policy(env: tuple[Servers, RunningSquid, Path]) -> None:
    _, squid, _ = env
    conn = http.client.HTTPConnection(HOST, squid.proxy_port, timeout=10)
    conn.request("CONNECT", "www.whole.domain.test:443")
    assert conn.getresponse().status in (302, 307)  # deny_info redirect (307 for CONNECT)
    conn.close()
    conn = http.client.HTTPConnection(HOST, squid.proxy_port, timeout=10)
    conn.request("CONNECT", f"{SITE}:443")
    # Passed to the origin side (nothing listens on 443 here: Squid answers 503).
    assert conn.getresponse().status != 302
    conn.close()


def test_canary(env: tuple[Servers, RunningSquid, Path]) -> None:
    _, squid, _ = env
    assert proxy_canary(HOST, squid.proxy_port, CANARY)
    assert not proxy_canary(HOST, squid.proxy_port, "http://unlisted.site.test:9/")


def test_no_client_addresses_in_logs(env: tuple[Servers, RunningSquid, Path]) -> None:
    _, squid, _ = env
    assert not (squid.workdir / "access.log").exists()
    assert "/gallery/listed" not in squid.log_text()


def test_shipped_config_parses(tmp_path: Path) -> None:
    require_binary("squid")
    conf, _, _ = render_squid_conf(tmp_path, tmp_path / "idx.bin", "http://stop.isp.example")
    res = subprocess.run(
        ["squid", "-k", "parse", "-f", str(conf)], check=False, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    text = conf.read_text()
    assert "access_log none" in text
    assert "ttl=1 negative_ttl=1" in text
    assert "%>a" not in text.replace("without %>a", "")
