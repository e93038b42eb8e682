"""The daemon's peers for the on-segment takedown test, run inside the agent's namespace.

    ip netns exec NS python -m tests.support.segment_peers DIR RECORDS_JSON SECRET_HEX

starts a real Unbound serving ``RECORDS_JSON`` (``[[name, type, value], ...]``), an SMTP
sink (aiosmtpd; one ``DIR/mail/<n>.eml`` per message) and a webhook sink checking the
HMAC (``DIR/hooks/<n>.json``), all on 127.0.0.1 of that namespace. It prints one JSON
line ``{"dns_port", "smtp_port", "webhook_url"}`` when ready and stops when its stdin
closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

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


def main() -> None:
    directory, records, secret = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    asyncio.run(serve(directory, [tuple(r) for r in records], bytes.fromhex(secret)))


if __name__ == "__main__":
    main()
