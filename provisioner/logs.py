"""Structured logging: one JSON object per line (or plain text), values escaped.

Client-supplied strings (hostnames, vendor classes, file names) reach the logs only as
JSON string values, so a newline or an ANSI escape in them cannot forge a log line
(docs/threats.md A16). Messages are never used as format strings for client data.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "setup_logging"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line with its `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line for `record`."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=True)


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure the root logger once, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter stays at warning unless we debug.
    for noisy in ("aiohttp.access", "sqlalchemy", "alembic", "pyghmi", "scapy.runtime"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.INFO)
