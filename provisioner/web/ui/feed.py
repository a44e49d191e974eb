"""The console's change feed: an in-memory copy of every machine, kept current by polling.

The rack page renders from this copy (no SQL per page view, so 5,000 machines render in
well under the 300 ms budget), and every change is pushed to the open pages as
Server-Sent Events. Changes are found two ways, both cheap indexed queries every
`interval` seconds: machine rows whose `updated_at` moved (every state change and field
update sets it; the queries are in provisioner/store/console_sql.py), and event rows after the last id seen
(live event lists, last power state). A full reload every `resync_s` catches deletions.
Another daemon instance on the same database is seen the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provisioner.events import utcnow
from provisioner.store.base import Store
from provisioner.store.records import EventRecord, MachineRecord
from provisioner.tasks import cancel_and_wait

__all__ = ["ChangeFeed", "FeedSource", "Message", "store_source"]

log = logging.getLogger(__name__)

QUEUE_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Message:
    """One SSE message: `kind` is `machine`, `event` or `resync`."""

    kind: str
    machine: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeedSource:
    """Where the feed reads from (explicit, so any store implementation can supply it)."""

    load_all: Callable[[], Awaitable[Sequence[MachineRecord]]]
    changed_since: Callable[[datetime | None], Awaitable[tuple[Sequence[MachineRecord], datetime | None]]]
    events_after: Callable[[int | None], Awaitable[tuple[Sequence[EventRecord], int | None]]]


def store_source(store: Store) -> FeedSource:
    """A FeedSource over a store's feed operations (indexed queries in SQL, store/console_sql.py)."""
    return FeedSource(
        load_all=store.list_machines,
        changed_since=store.machines_changed_since,
        events_after=store.events_after,
    )


POWER_AFTER = {"on": "on", "off": "off", "cycle": "on", "reset": "on"}


def power_state_of(event: EventRecord) -> str | None:
    """The power state an event tells us about (a BMC call's result), or None."""
    if event.kind != "power.call":
        return None
    state = event.data.get("state")
    if isinstance(state, str) and state:
        return state
    action = event.data.get("action")
    return POWER_AFTER.get(str(action)) if action is not None else None


@dataclass
class ChangeFeed:
    """Machines by name, last power state by name, and the subscribers to notify."""

    source: FeedSource
    interval: float = 0.5
    resync_s: float = 30.0
    machines: dict[str, MachineRecord] = field(default_factory=dict)
    power: dict[str, str] = field(default_factory=dict)
    _subscribers: set[asyncio.Queue[Message | None]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _mark: datetime | None = None
    _last_event: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    on_loaded: Callable[[], None] | None = None
    """Called once after the first successful load (the console warms its row cache)."""

    async def start(self) -> None:
        """Start loading and polling in the background.

        Never waits on the database: the web server (and /healthz, which reports the
        database down) must come up while it is unreachable; the feed retries until the
        first load succeeds, and pages show an empty rack until then.
        """
        self._task = asyncio.create_task(self._run(), name="ui-feed")

    async def _first_load(self) -> None:
        while True:
            try:
                await self._reload()
                _, self._mark = await self.source.changed_since(None)
                _, self._last_event = await self.source.events_after(None)
            except Exception as exc:
                log.warning("console feed: first load failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(max(1.0, self.interval * 4))
                continue
            break
        if self.on_loaded is not None:
            self.on_loaded()
        self.ready.set()

    async def stop(self) -> None:
        """Stop polling and end every open stream."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for queue in list(self._subscribers):
            self._offer(queue, None)

    def subscribe(self) -> asyncio.Queue[Message | None]:
        """A queue that receives every message from now on (None: the stream must end)."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Message | None]) -> None:
        """Stop delivering to `queue`."""
        self._subscribers.discard(queue)

    async def _reload(self) -> None:
        # Keep the old object when nothing changed, so cached rows stay valid (rows.py).
        old = self.machines
        self.machines = {
            m.name: (old[m.name] if old.get(m.name) == m else m) for m in await self.source.load_all()
        }

    async def _run(self) -> None:
        await self._first_load()
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + self.resync_s
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
                if loop.time() >= next_resync:
                    next_resync = loop.time() + self.resync_s
                    await self._reload()
            except Exception:
                log.exception("console feed poll failed")

    async def poll(self) -> None:
        """One round: changed machines, then new events; publish both."""
        changed, self._mark = await self.source.changed_since(self._mark)
        for machine in changed:
            self.machines[machine.name] = machine
            self._publish(Message("machine", machine.name, self.row(machine)))
        events, self._last_event = await self.source.events_after(self._last_event)
        for event in events:
            state = power_state_of(event)
            if state is not None and event.machine is not None:
                self.power[event.machine] = state
                known = self.machines.get(event.machine)
                if known is not None:
                    self._publish(Message("machine", known.name, self.row(known)))
            self._publish(Message("event", event.machine, event_json(event)))

    def _publish(self, message: Message) -> None:
        for queue in list(self._subscribers):
            self._offer(queue, message)

    def _offer(self, queue: asyncio.Queue[Message | None], message: Message | None) -> None:
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            # A page that cannot keep up is told to reload rather than shown stale rows.
            self._subscribers.discard(queue)
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(Message("resync", None, {}))

    def row(self, m: MachineRecord) -> dict[str, Any]:
        """What the rack page shows of one machine (JSON for the live update)."""
        return {
            "name": m.name,
            "cluster": m.cluster or "",
            "role": m.role,
            "state": m.state,
            "since": iso(m.state_since),
            "attempts": m.attempts,
            "ip": m.ip or "",
            "mac": m.macs[0] if m.macs else "",
            "bmc": m.bmc.driver if m.bmc else "none",
            "power": self.power.get(m.name, "unknown"),
            "reason": m.state_reason if m.state == "Failed" else "",
            "hostname": m.hostname or "",
        }


def iso(value: datetime | None) -> str:
    """ISO 8601 in UTC ('' for None); naive database times are UTC."""
    if value is None:
        return ""
    if value.tzinfo is None:
        return value.isoformat() + "Z"
    return value.isoformat()


def event_json(e: EventRecord) -> dict[str, Any]:
    """One event for a live list (text fields only; the page sets them as text)."""
    return {
        "id": e.id,
        "at": iso(e.at),
        "kind": e.kind,
        "severity": e.severity,
        "actor": e.actor,
        "message": e.message,
    }


def now_utc() -> datetime:
    """The wall clock (the shell's one read of it; pages compute time in stage from it)."""
    return utcnow()
