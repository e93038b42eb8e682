"""aiohttp's own server log records carry no request line and no client address.

A request the HTTP parser refuses is logged by aiohttp with the client's address and the
parser error, which quotes the raw request line (a looked-up URL may be a list entry).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry

from edgeagent import logs
from edgeagent.api.app import bound_port, create_metrics_app, start_site
from edgeagent.limits import DEFAULT_LIMITS

MARKER = "leak-marker.example"

MALFORMED = [
    f"GET /{MARKER}/x HTTP/9.9\r\n\r\n",  # bad version
    f"G\x01T http://{MARKER}/ HTTP/1.1\r\n\r\n",  # bad method (logged at debug)
    f"GET /{MARKER}\x00 HTTP/1.1\r\nHost: a.example\r\n\r\n",  # bad character in the path
    f"GET / HTTP/1.1\r\nHost: a.example\r\nBad Header {MARKER}\r\n\r\n",  # bad header
    f"GET http://{MARKER}/{'a' * 9000} HTTP/1.1\r\n\r\n",  # request line too long
]


@pytest.fixture
async def site() -> AsyncIterator[int]:
    runner = await start_site(
        create_metrics_app(CollectorRegistry()), "127.0.0.1", 0, DEFAULT_LIMITS
    )
    try:
        yield bound_port(runner)
    finally:
        await runner.cleanup()


async def _send_malformed(port: int) -> None:
    for raw in MALFORMED:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw.encode("latin-1"))
        await writer.drain()
        answer = await reader.read(100)
        assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer
        writer.close()
        await writer.wait_closed()


async def test_parser_errors_log_neither_request_line_nor_address(
    site: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _send_malformed(site)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == len(MALFORMED)  # every refusal is still logged ...
    text = caplog.text
    assert "BadStatusLine, status 400" in text  # ... with its kind and status
    assert "leak-marker" not in text  # ... but no request line
    assert "127.0.0.1" not in text  # ... and no address
    for r in records:
        assert r.exc_info is None
        assert r.args is None


@pytest.fixture
def configured_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_the_daemons_json_log_has_no_request_line_or_address(
    site: int, configured_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("debug", "json")
    await _send_malformed(site)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if '"aiohttp.server"' in line]
    assert len(lines) == len(MALFORMED)
    assert all("Error handling request from [redacted]" in line["msg"] for line in lines)
    assert "leak-marker" not in out
    assert "127.0.0.1" not in out


def test_other_records_keep_their_message() -> None:
    record = logging.LogRecord("aiohttp.server", logging.INFO, "f", 1, "plain %d%%", (5,), None)
    assert logs.AiohttpRedaction().filter(record)
    assert record.getMessage() == "plain [redacted]%"
    plain = logging.LogRecord("aiohttp.server", logging.INFO, "f", 1, "no args", None, None)
    logs.AiohttpRedaction().filter(plain)
    assert plain.getMessage() == "no args"


def test_filter_is_installed_once() -> None:
    logs.redact_aiohttp_server_logs()
    logs.redact_aiohttp_server_logs()
    filters = logging.getLogger("aiohttp.server").filters
    assert sum(isinstance(f, logs.AiohttpRedaction) for f in filters) == 1
