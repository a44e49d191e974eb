"""Events: the audit trail every subsystem writes to, and the sink they write through.

Protocol cores return events as values; the I/O shells hand them to an `EventSink`.
The daemon's sink batches events into the database (append-only `event` table); tests
use `MemoryEventSink`. Emitting never blocks and never raises: an audit write must not
stop a DHCP answer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Event", "EventSink", "MemoryEventSink", "Severity", "discovered_event", "utcnow"]


class Severity(enum.StrEnum):
    """How loudly an event should be surfaced."""

    INFO = "info"
    WARNING = "warning"
    ALERT = "alert"  # possible attack or secret exposure (e.g. a replayed config token)


def utcnow() -> datetime:
    """The one place the shells read the wall clock (pure code takes `now` as an argument)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One audit record.

    `kind` is a dotted name (`dhcp.ack`, `tftp.transfer`, `machine.transition`,
    `config.refused`, `api.change`, ...). `data` holds JSON-serialisable details and must
    never hold a secret. `group` (usually the client address) marks an event that
    unauthenticated traffic can cause: the database sink folds repeats of one (kind,
    group) into a counter row per window (provisioner/eventagg.py).
    """

    kind: str
    at: datetime
    machine: str | None = None
    severity: Severity = Severity.INFO
    message: str = ""
    actor: str = "system"
    data: Mapping[str, object] = field(default_factory=dict)
    group: str = ""


def discovered_event(mac: str, uuid: str | None, arch: str | None, via: str, source: str) -> Event:
    """`machine.discovered`, grouped by `source` (a flood of fresh MACs is folded)."""
    return Event(
        kind="machine.discovered",
        at=utcnow(),
        data={"mac": mac, "uuid": uuid, "arch": arch, "via": via, "source": source},
        group=source,
    )


class EventSink(Protocol):
    """Where events go. `emit` must not block or raise."""

    def emit(self, event: Event) -> None:
        """Queue one event for recording."""


class MemoryEventSink:
    """A behavioural sink for tests: keeps every event in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        """Record the event."""
        self.events.append(event)

    def kinds(self) -> list[str]:
        """The kinds recorded so far, in order."""
        return [e.kind for e in self.events]
