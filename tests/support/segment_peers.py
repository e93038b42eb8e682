"""The daemon's peers for the on-segment takedown test, run inside the agent's namespace.

    ip netns exec NS python -m tests.support.segment_peers DIR RECORDS_JSON SECRET_HEX

starts a real Unbound serving ``RECORDS_JSON`` (``[[name, type, value], ...]``), an SMTP
sink (aiosmtpd; one ``DIR/mail/<n>.eml`` per message) and a webhook sink checking the
HMAC (``DIR/hooks/<n>.json``), all on 127.0.0.1 of that namespace. It prints one JSON
line ``{"dns_port", "smtp_port", "webhook_url"}`` when ready and stops when its stdin
closes. :func:`running` does all that from a test (``prefix`` runs it in a namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeagent.lab.resolvers import unbound_server
from edgeagent.lab.sinks import SmtpSink, WebhookSink


async def serve(directory: Path, records: list[tuple[str, str, str]], secret: bytes) -> None:
    with unbound_server(records) as (_, dns_port):
        smtp = SmtpSink(directory / "mail")
        hook = WebhookSink(directory / "hooks", secret)
        await smtp.start()
        await hook.start()
        ready = {"dns_port": dns_port, "smtp_port": smtp.port, "webhook_url": hook.url}
        print(json.dumps(ready), flush=True)
        try:
            await asyncio.to_thread(sys.stdin.read)
        finally:
            await hook.close()
            await smtp.close()


@contextlib.contextmanager
def running(
    directory: Path,
    records: Sequence[tuple[str, str, str]],
    secret: bytes,
    *,
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The peers in a subprocess (``prefix``, e.g. ``ip netns exec NS``, runs it
    elsewhere) until the block ends; yields their ``dns_port``, ``smtp_port`` and
    ``webhook_url``."""
    repo = Path(__file__).resolve().parents[2]
    argv = [*prefix, sys.executable, "-m", "tests.support.segment_peers", str(directory)]
    proc = subprocess.Popen(
        [*argv, json.dumps(records), secret.hex()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=repo, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "peers exited"
        yield json.loads(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    directory, records, secret = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    asyncio.run(serve(directory, [tuple(r) for r in records], bytes.fromhex(secret)))


if __name__ == "__main__":
    main()
