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
- trust is checked here, by asking the node's API port for its certificate.

The decision is pure: `decide(machine, now, timeouts)` returns the actions due (a move
by a signal, a failure, giving up, or one of the I/O steps: power on, check the netboot's
progress, check trust, deprovision); the pure `after_*` functions turn an I/O step's
outcome into the next action. The `Reconciler` class only reads machines, claims them and
performs actions. Every transition goes through `lifecycle.move`: a compare-and-set with
its event in the same transaction, so a daemon restart resumes where the last one
stopped, and with several daemons on one database only the one holding a machine's claim
drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from provisioner import lifecycle
from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.lifecycle import (
    ACTIVE_STATES,
    Signal,
    StageTimeouts,
    is_legal,
    retry_delay,
    stage_timeout,
)
from provisioner.model import Desired
from provisioner.model import MachineState as S
from provisioner.store.records import EventRecord, MachineRecord

__all__ = [
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
    "after_power_on",
    "after_trust",
    "decide",
    "netboot_verdict",
    "wants_attention",
]

log = logging.getLogger(__name__)

CLAIM_STALE_S = 60.0
DEPROVISIONING_FAILED = "deprovisioning: "
"""Prefix of a failure reason recorded by a deprovisioning run (its retries count apart)."""
TRUST_POLL_S = 3.0


class PowerPort(Protocol):
    """How the reconciler asks for power actions: `pxe_on` (PXE once + power on) and `off`.

    Raises an exception whose message tells the operator what went wrong. For machines
    without a BMC (driver `manual`) the implementation asks the operator instead.
    """

    async def __call__(self, machine: MachineRecord, action: str) -> None:
        """Perform `action` on the machine's BMC."""


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """The outcome of one trust check."""

    ok: bool
    reason: str = ""


TrustChecker = Callable[[MachineRecord], Awaitable[TrustVerdict]]


class ReconcilerStore(lifecycle.TransitionWriter, Protocol):
    """The store operations the reconciler uses."""

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


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


# -- actions: what the pure decision asks the shell to do -------------------------------


@dataclass(frozen=True, slots=True)
class Move:
    """Apply `signal` (lifecycle.move), setting `fields` in the same transaction."""

    signal: Signal
    reason: str
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fail:
    """End the stage in Failed with `reason` (if the table allows failing from here)."""

    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No attempt remains: desired becomes none, with a `machine.gave_up` warning."""

    message: str


@dataclass(frozen=True, slots=True)
class PowerOn:
    """Ask the power port for PXE once + power on; then `after_power_on`."""


@dataclass(frozen=True, slots=True)
class CheckNetboot:
    """Read the machine's events since `since`; then `netboot_verdict`."""

    since: datetime


@dataclass(frozen=True, slots=True)
class CheckTrust:
    """Ask the trust checker (at most every TRUST_POLL_S); then `after_trust`."""


@dataclass(frozen=True, slots=True)
class Deprovision:
    """Power off, release leases, revoke tokens; then `after_deprovision`."""


Action = Move | Fail | GiveUp | PowerOn | CheckNetboot | CheckTrust | Deprovision


# -- the pure decision ------------------------------------------------------------------


def wants_attention(m: MachineRecord) -> bool:
    """True if the machine is in an active stage or its desired state asks for work."""
    state, desired = S(m.state), Desired(m.desired)
    if state in ACTIVE_STATES:
        return True
    if desired in (Desired.PROVISIONED, Desired.REPROVISION) and state in (
        S.REGISTERED,
        S.FAILED,
        S.PROVISIONED,
    ):
        return not (state == S.PROVISIONED and desired == Desired.PROVISIONED)
    return desired == Desired.DEPROVISIONED and state != S.REGISTERED


def decide(m: MachineRecord, now: datetime, timeouts: StageTimeouts) -> tuple[Action, ...]:  # noqa: PLR0911 - one answer per case, read top to bottom
    """The actions due for one machine now (empty: nothing to do). Pure."""
    if not wants_attention(m):
        return ()
    state, desired = S(m.state), Desired(m.desired)
    since = _aware(m.state_since) or now
    elapsed = (now - since).total_seconds()
    if desired in (Desired.DEPROVISIONED, Desired.REPROVISION) and state not in (
        S.DEPROVISIONING,
        S.REGISTERED,
    ):
        if state == S.FAILED and m.attempts > 0 and m.state_reason.startswith(DEPROVISIONING_FAILED):
            return _retry_or_give_up(m, elapsed, Signal.DEPROVISION, timeouts)
        return (Move(Signal.DEPROVISION, f"{desired.removesuffix('ed')} requested", {"attempts": 1}),)
    if state == S.DEPROVISIONING:
        if elapsed > timeouts.deprovisioning:
            return (Fail(f"{DEPROVISIONING_FAILED}timed out"),)
        return (Deprovision(),)
    if state in (S.REGISTERED, S.PROVISIONED) and desired in (Desired.PROVISIONED, Desired.REPROVISION):
        fields: dict[str, object] = {"attempts": 1, "installed": False}
        if desired == Desired.REPROVISION:
            fields["desired"] = Desired.PROVISIONED.value
        return (Move(Signal.PROVISION, "provision requested", fields),)
    if state == S.FAILED and desired == Desired.PROVISIONED:
        if m.attempts == 0:  # the operator asked again: a fresh run, no backoff
            return (Move(Signal.PROVISION, "provision requested again", {"attempts": 1}),)
        return _retry_or_give_up(m, elapsed, Signal.RETRY, timeouts)
    budget = stage_timeout(state, timeouts)
    if budget is not None and elapsed > budget:
        return (Fail(f"{state.value} took longer than {budget:.0f}s"),)
    if state == S.POWERING_ON:
        return (PowerOn(),)
    if state == S.NETBOOTING:
        return (CheckNetboot(since),)
    if state == S.CONFIG_SERVED:
        return (CheckTrust(),)
    if state == S.TRUSTED:
        settled = {"installed": True, "desired": Desired.PROVISIONED.value}
        return (Move(Signal.SETTLED, "installed and trusted", settled),)
    return ()


def _retry_or_give_up(
    m: MachineRecord, elapsed: float, signal: Signal, timeouts: StageTimeouts
) -> tuple[Action, ...]:
    delay = retry_delay(m.attempts, timeouts)
    if delay is None:
        return (GiveUp(f"giving up after {m.attempts} attempt(s): {m.state_reason}"),)
    if elapsed >= delay:
        return (
            Move(signal, f"retry {m.attempts + 1} after: {m.state_reason}", {"attempts": m.attempts + 1}),
        )
    return ()


def after_power_on(m: MachineRecord, error: str | None) -> Action:
    """The move after the power port answered (`error` is its message, or None)."""
    if error is not None:
        return Fail(f"power on failed: {error}")
    manual = m.bmc is None or m.bmc.driver == "manual"
    reason = "no BMC: waiting for someone to power it on by hand" if manual else "set PXE once and powered on"
    return Move(Signal.POWERED_ON, reason)


def netboot_verdict(
    since: datetime, now: datetime, seen: Sequence[EventRecord], timeouts: StageTimeouts
) -> Fail | None:
    """Where a netboot stalled, from the machine's events since it started; None: still in time."""
    t = timeouts
    elapsed = (now - since).total_seconds()
    kinds = {e.kind for e in seen}
    dhcp_at = min((e.at for e in seen if e.kind.startswith("dhcp.")), default=None)
    script_at = min((e.at for e in seen if e.kind == "boot.script"), default=None)
    if dhcp_at is None and "boot.script" not in kinds:
        if elapsed > t.dhcp:
            return Fail(f"never PXE-booted: no DHCP request within {t.dhcp:.0f}s of power on")
        return None
    if script_at is None:
        start = _aware(dhcp_at) or since
        if (now - start).total_seconds() > t.script:
            return Fail(f"got DHCP but never fetched its iPXE script within {t.script:.0f}s")
        return None
    start = _aware(script_at) or since
    if (now - start).total_seconds() > t.config:
        reason = f"fetched its iPXE script but not its config within {t.config:.0f}s"
        return Fail(reason + " (kernel/initramfs boot failed?)")
    return None


def after_trust(verdict: TrustVerdict) -> Move | None:
    """The move after a trust check (None: not trusted yet, ask again later)."""
    if not verdict.ok:
        return None
    return Move(Signal.TRUSTED, verdict.reason or "node certificate chains to the cluster OS CA")


def after_deprovision(m: MachineRecord, error: str | None, released: int) -> Action:
    """The move after power off and lease release (`error`: the power port's message)."""
    if error is not None:
        return Fail(f"{DEPROVISIONING_FAILED}power off failed: {error}")
    desired = Desired.PROVISIONED if m.desired == Desired.REPROVISION else Desired.NONE
    return Move(
        Signal.DEPROVISIONED,
        f"powered off, {released} lease(s) released, config tokens revoked",
        {"installed": False, "desired": desired.value, "attempts": 0},
    )


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

    async def _fail(self, m: MachineRecord, reason: str) -> None:
        if is_legal(S(m.state), Signal.FAILED):
            await self._move(m, Signal.FAILED, reason)
        else:
            log.error("%s: cannot fail from %s: %s", m.name, m.state, reason)
