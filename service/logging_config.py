"""Logging for the API process: the standard library, configured once.

Every record carries the id of the request it belongs to (`request_id`, from a context variable
the HTTP edge sets), so the id a client quotes from an SDK error finds its lines. Two formats:

- `json`: one object per line, `{"ts", "level", "logger", "message", "request_id", …}` plus the
  fields a record was given under `extra={"fields": {...}}` (the access line's method, route…);
- `text`: `2026-01-02 03:04:05,678 INFO ftserve.access [req_…] POST /v1/files 200 12.3ms org=acme`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("ftserve_request_id", default=None)
"""The id of the request being served in this context (None outside requests)."""


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.rid = f" [{request_id}]" if request_id else ""
        return super().format(record)


def resolve_format(setting: str) -> str:
    """`auto` means text for a person at a terminal, JSON for a collector."""
    if setting in ("json", "text"):
        return setting
    return "text" if sys.stderr.isatty() else "json"


def configure_logging(log_format: str = "auto", level: str = "INFO") -> None:
    """Route every logger (uvicorn's included) to one stderr handler in the chosen format.

    Safe to call again: the handler it installed before is replaced, not duplicated.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if resolve_format(log_format) == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn installs its own text handlers; send its records through ours instead, except its
    # access lines: the edge middleware writes a richer one (uvicorn logs them when it finds any
    # handler up the tree).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = name != "uvicorn.access"
    logging.getLogger("alembic").setLevel(logging.WARNING)
