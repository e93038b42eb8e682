"""Structured logging to stdout (JSON by default) with the stdlib only.

Callers log events with ``extra={"fields": {...}}``; the formatter merges those fields into
the JSON object. Nothing here redacts: code must never pass a list entry or an end user's
address in the first place (use ``Indicator.ref`` / ``errors.short_hash``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            doc["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(doc, default=str, separators=(",", ":"))


def configure(level: str = "info", fmt: str = "json") -> None:
    """Send every edgeagent log record to stdout; quiet aiohttp's per-request access log."""
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log records client addresses: never enabled (nothing is kept about
    # end users).
    logging.getLogger("aiohttp.access").disabled = True
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def fields(**kw: Any) -> dict[str, Any]:
    """``log.info("msg", extra=fields(feed="x", entries=3))``."""
    return {"fields": kw}
