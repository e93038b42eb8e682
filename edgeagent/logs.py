"""Structured logging to stdout (JSON by default) with the stdlib only.

Callers log events with ``extra={"fields": {...}}``; the formatter merges those fields into
the JSON object. Our own code never passes a list entry or an end user's address in the
first place (use ``Indicator.ref`` / ``errors.short_hash``); the one redaction here is for
aiohttp's server loggers, whose records would carry both (:class:`AiohttpRedaction`).
"""

from __future__ import annotations

import json
import logging
import re
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


# The loggers aiohttp's HTTP server writes to about a request.
_AIOHTTP_SERVER_LOGGERS = ("aiohttp.server", "aiohttp.web")
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[a-zA-Z%]")


class AiohttpRedaction(logging.Filter):
    """Keeps the request out of aiohttp's server log records.

    aiohttp logs a request it cannot parse with the client's address as an argument and
    the parser error, which quotes the raw request line (a looked-up URL, a list entry),
    as the exception. Each record keeps its message with every argument replaced by
    ``[redacted]`` and the exception reduced to its type and HTTP status.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = _PLACEHOLDER.sub(_redact, str(record.msg))
            record.args = None
        if record.exc_info is not None:
            exc = record.exc_info[1]
            if exc is not None:
                status = getattr(exc, "code", None)
                detail = f"status {status}" if isinstance(status, int) else "no status"
                record.msg = f"{record.msg} ({type(exc).__name__}, {detail})"
            record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def _redact(placeholder: re.Match[str]) -> str:
    return "%" if placeholder[0] == "%%" else "[redacted]"


_REDACTION = AiohttpRedaction()


def redact_aiohttp_server_logs() -> None:
    """Install :class:`AiohttpRedaction` on aiohttp's server loggers (idempotent)."""
    for name in _AIOHTTP_SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTION not in logger.filters:
            logger.addFilter(_REDACTION)


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
    redact_aiohttp_server_logs()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def fields(**kw: Any) -> dict[str, Any]:
    """``log.info("msg", extra=fields(feed="x", entries=3))``."""
    return {"fields": kw}
