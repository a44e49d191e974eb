"""The reconciler: moves each machine toward what the operator asked for.

Theory of operation
-------------------
Every `interval` seconds the reconciler reads the machines and, for each one whose
`desired` asks for work or whose state is active, decides one step from the lifecycle
table (provisioner/lifecycle.py). Steps that call a BMC run as their own task so one slow
BMC never delays another machine; a machine never has two steps in flight.

Signals come from the parts that see them, recorded in the database:
- DHCP answers and iPXE script fetches are events with the machine's name
  (`dhcp.*`, `boot.script`), which the reconciler reads to say *where* a netboot stalled;
- the config fetch moves Netbooting -> ConfigServed in the web layer (compare-and-set);
- trust is checked here, by asking the node's API port for its certificate;
- the node's own Talos events (provisioner/telemetry) arrive through `node_reported`:
  installing, installed (rebooting), booted from disk, or an error that fails the run.

The decision is pure (provisioner/reconcile.py): `decide(machine, now, timeouts)` returns
the actions due (a move by a signal, a failure, giving up, or one of the I/O steps: power
on, check the netboot's progress, check trust, deprovision); the pure `after_*` functions
turn an I/O step's outcome into the next action. The `Reconciler` class only reads
machines, claims them and performs actions. Every transition goes through
`lifecycle.move`: a compare-and-set with its event in the same transaction, so a daemon
restart resumes where the last one stopped, and with several daemons on one database
only the one holding a machine's claim drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from provisioner import lifecycle
from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.lifecycle import Signal, StageTimeouts, is_legal
from provisioner.model import Desired
from provisioner.model import MachineState as S
from provisioner.reconcile import (
    DEPROVISIONING_FAILED,
    Action,
    CheckNetboot,
    CheckTrust,
    Deprovision,
    Fail,
    GiveUp,
    Move,
    PowerOn,
    TrustVerdict,
    after_deprovision,
    after_node_report,
    after_power_on,
    after_trust,
    decide,
    netboot_verdict,
    wants_attention,
)
from provisioner.store.records import EventRecord, MachineRecord

__all__ = [
    "DEPROVISIONING_FAILED",
    "Action",
    "CheckNetboot",
    "CheckTrust",
    "Deprovision",
    "Fail",
    "GiveUp",
    "Move",
    "PowerOn",
    "PowerPort",
    "Reconciler",
    "ReconcilerStore",
    "TrustChecker",
    "TrustVerdict",
    "after_deprovision",
    "after_node_report",
    "after_power_on",
    "after_trust",
    "decide",
    "netboot_verdict",
    "wants_attention",
]

log = logging.getLogger(__name__)

CLAIM_STALE_S = 60.0
TRUST_POLL_S = 3.0


class PowerPort(Protocol):
    """How the reconciler asks for power actions: `pxe_on` (PXE once + power on) and `off`.

    Raises an exception whose message tells the operator what went wrong. For machines
    without a BMC (driver `manual`) the implementation asks the operator instead.
    """

    async def __call__(self, machine: MachineRecord, action: str) -> None:
        """Perform `action` on the machine's BMC."""


TrustChecker = Callable[[MachineRecord], Awaitable[TrustVerdict]]


class ReconcilerStore(lifecycle.TransitionWriter, Protocol):
    """The store operations the reconciler uses."""

    async def get_machine(self, name: str) -> MachineRecord | None:
        """One machine, or None."""
        ...

    async def list_machines(self) -> list[MachineRecord]:
        """Every machine, by name."""
        ...

    async def claim(self, name: str, instance: str, *, stale_after_s: float) -> bool:
        """Take (or keep) the right to drive a machine's run."""
        ...

    async def update_machine(self, name: str, *, event: Event | None = None, **fields: object) -> bool:
        """Set plain fields (desired, attempts, ...)."""
        ...

    async def list_events(
        self, *, machine: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[EventRecord]:
        """A machine's events, newest first."""
        ...

    async def release_machine(self, name: str, macs: Sequence[str], *, event: Event | None = None) -> int:
        """Release the machine's leases and revoke its config tokens."""
        ...


# -- the shell ----------------------------------------------------------------------------


class Reconciler:
    """Drives provisioning runs; one instance per daemon."""

    def __init__(
        self,
        store: ReconcilerStore,
        events: EventSink,
        power: PowerPort,
        trust: TrustChecker,
        *,
        instance: str,
        timeouts: StageTimeouts | None = None,
        interval: float = 1.0,
    ) -> None:
        self._store = store
        self._events = events
        self._power = power
        self._trust = trust
        self._instance = instance
        self.timeouts = timeouts or StageTimeouts()
        self._interval = interval
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._last_trust_check: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        """Stop the loop and any step in flight (state stays in the database)."""
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._inflight.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("reconciler tick failed")
            await asyncio.sleep(self._interval)

    async def tick(self) -> None:
        """Look at every machine once and start the steps that are due."""
        self._inflight = {k: t for k, t in self._inflight.items() if not t.done()}
        for machine in await self._store.list_machines():
            if machine.name in self._inflight or not wants_attention(machine):
                continue
            if not await self._store.claim(machine.name, self._instance, stale_after_s=CLAIM_STALE_S):
                continue
            self._inflight[machine.name] = asyncio.create_task(
                self._step(machine), name=f"step-{machine.name}"
            )

    async def settle(self) -> None:
        """Wait for the steps in flight (tests)."""
        if self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def _step(self, m: MachineRecord) -> None:
        try:
            for action in decide(m, utcnow(), self.timeouts):
                await self._perform(m, action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("step for %s failed", m.name)
            await self._fail(m, f"internal error: {exc}")

    async def _perform(self, m: MachineRecord, action: Action | None) -> None:
        match action:
            case None:
                return
            case Move(signal, reason, fields):
                await self._move(m, signal, reason, fields)
            case Fail(reason):
                await self._fail(m, reason)
            case GiveUp(message):
                await self._give_up(m, message)
            case PowerOn():
                await self._perform(m, after_power_on(m, await self._call_power(m, "pxe_on")))
            case CheckNetboot(since):
                seen = await self._store.list_events(machine=m.name, since=since, limit=200)
                await self._perform(m, netboot_verdict(since, utcnow(), seen, self.timeouts))
            case CheckTrust():
                loop = asyncio.get_running_loop()
                if loop.time() - self._last_trust_check.get(m.name, 0.0) < TRUST_POLL_S:
                    return
                self._last_trust_check[m.name] = loop.time()
                verdict = await self._trust(m)
                if not verdict.ok:
                    log.debug("trust check of %s: %s", m.name, verdict.reason)
                await self._perform(m, after_trust(verdict))
            case Deprovision():
                error = await self._call_power(m, "off")
                released = 0 if error is not None else await self._store.release_machine(m.name, m.macs)
                await self._perform(m, after_deprovision(m, error, released))

    async def node_reported(self, name: str, signal: Signal | None, message: str) -> bool:
        """Apply a node's own report (`signal` None: the node reports an error); True if it moved."""
        m = await self._store.get_machine(name)
        if m is None:
            return False
        match after_node_report(m, signal, message):
            case Move(sig, reason, fields):
                return await self._move(m, sig, reason, fields)
            case Fail(reason):
                return await self._fail(m, reason)
            case _:
                return False

    async def _call_power(self, m: MachineRecord, action: str) -> str | None:
        """None on success, else the driver's message (it says what is wrong)."""
        try:
            await self._power(m, action)
        except Exception as exc:
            return str(exc)
        return None

    async def _give_up(self, m: MachineRecord, message: str) -> None:
        await self._store.update_machine(
            m.name,
            desired=Desired.NONE.value,
            event=Event(
                kind="machine.gave_up",
                at=utcnow(),
                machine=m.name,
                severity=Severity.WARNING,
                message=message,
            ),
        )

    async def _move(
        self, m: MachineRecord, signal: Signal, reason: str, fields: Mapping[str, object] | None = None
    ) -> bool:
        moved = await lifecycle.move(self._store, m, signal, reason, now=utcnow(), fields=fields)
        if moved:
            log.info("%s: %s -> %s (%s)", m.name, m.state, lifecycle.next_state(S(m.state), signal), reason)
        return moved

    async def _fail(self, m: MachineRecord, reason: str) -> bool:
        if is_legal(S(m.state), Signal.FAILED):
            return await self._move(m, Signal.FAILED, reason)
        log.error("%s: cannot fail from %s: %s", m.name, m.state, reason)
        return False
