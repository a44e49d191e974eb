"""Talos kernel log lines (`talos.logging.kernel=tcp://...`, `KmsgLogConfig`) and the per-machine ring.

Pure. Talos's sender (internal/app/machined/pkg/runtime/logging/sender_jsonlines.go,
fields from controllers/runtime/kmsg_log.go, v1.13.9) writes one JSON object per line:
`msg`, `talos-time` (RFC 3339 nano), `talos-level` (zap level), and the kmsg fields
`facility`, `seq`, `clock`, `priority`. Unknown fields are kept out of the line but do
not make it invalid.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

__all__ = ["KmsgError", "LogLine", "LogRing", "parse_line"]


class KmsgError(ValueError):
    """Not a Talos JSON log line."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One kernel log line as the node sent it, plus when we received it (unix seconds)."""

    received: float
    msg: str
    time: str = ""
    level: str = ""
    facility: str = ""
    priority: str = ""
    seq: int | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON shape for the API."""
        return {
            "received": self.received,
            "time": self.time,
            "level": self.level,
            "facility": self.facility,
            "priority": self.priority,
            "seq": self.seq,
            "msg": self.msg,
        }

    def text(self) -> str:
        """One readable line."""
        where = f"{self.facility or '-'}.{self.priority or self.level or '-'}"
        return f"{self.time or self.received} {where}: {self.msg}"


def _str(data: dict[str, object], key: str) -> str:
    value = data.get(key, "")
    return value if isinstance(value, str) else str(value)


def parse_line(raw: bytes, received: float) -> LogLine:
    """One line (without its newline) to a LogLine; raises KmsgError."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        msg = f"not JSON: {exc}"
        raise KmsgError(msg) from None
    if not isinstance(data, dict) or not isinstance(data.get("msg"), str):
        msg = "not a Talos log object (no string 'msg')"
        raise KmsgError(msg)
    seq = data.get("seq")
    return LogLine(
        received=received,
        msg=data["msg"],
        time=_str(data, "talos-time"),
        level=_str(data, "talos-level"),
        facility=_str(data, "facility"),
        priority=_str(data, "priority"),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
    )


class LogRing:
    """The last `size` lines of one machine, with a running count for followers."""

    def __init__(self, size: int) -> None:
        self._lines: deque[LogLine] = deque(maxlen=size)
        self.total = 0
        """Lines ever appended: a follower asks for lines after the total it last saw."""

    def append(self, line: LogLine) -> None:
        """Keep a line, forgetting the oldest when full."""
        self._lines.append(line)
        self.total += 1

    def tail(self, limit: int | None = None) -> list[LogLine]:
        """The newest `limit` lines (all kept lines when None), oldest first."""
        lines = list(self._lines)
        return lines if limit is None else lines[-limit:] if limit > 0 else []

    def since(self, total: int) -> list[LogLine]:
        """Lines appended after the ring's total was `total` (those still kept)."""
        missing = self.total - total
        if missing <= 0:
            return []
        lines = list(self._lines)
        return lines[-missing:]
