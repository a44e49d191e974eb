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

Every transition is a compare-and-set with its event in the same transaction (Store.
transition), so a daemon restart resumes where the last one stopped, and with several
daemons on one database only the one holding a machine's claim drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.lifecycle import (
    ACTIVE_STATES,
    INSTALL_STATES,
    Signal,
    StageTimeouts,
    is_legal,
    next_state,
    retry_delay,
    stage_timeout,
)
from provisioner.model import MachineState as S
from provisioner.store.records import MachineRecord
from provisioner.store.repository import Store

__all__ = ["PowerPort", "Reconciler", "TrustChecker", "TrustVerdict"]

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


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


class Reconciler:
    """Drives provisioning runs; one instance per daemon."""

    def __init__(
        self,
        store: Store,
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

    # -- one pass -----------------------------------------------------------------------

    async def tick(self) -> None:
        """Look at every machine once and start the steps that are due."""
        self._inflight = {k: t for k, t in self._inflight.items() if not t.done()}
        for machine in await self._store.list_machines():
            if machine.name in self._inflight or not self._wants_attention(machine):
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

    @staticmethod
    def _wants_attention(m: MachineRecord) -> bool:
        state = S(m.state)
        if state in ACTIVE_STATES:
            return True
        if m.desired in ("provisioned", "reprovision") and state in (S.REGISTERED, S.FAILED, S.PROVISIONED):
            return not (state == S.PROVISIONED and m.desired == "provisioned")
        return m.desired == "deprovisioned" and state != S.REGISTERED

    async def _step(self, m: MachineRecord) -> None:
        try:
            await self._decide(m)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("step for %s failed", m.name)
            await self._fail(m, f"internal error: {exc}")

    async def _decide(self, m: MachineRecord) -> None:
        state = S(m.state)
        now = utcnow()
        since = _aware(m.state_since) or now
        elapsed = (now - since).total_seconds()
        if m.desired in ("deprovisioned", "reprovision") and state not in (S.DEPROVISIONING, S.REGISTERED):
            if state == S.FAILED and m.attempts > 0 and m.state_reason.startswith(DEPROVISIONING_FAILED):
                await self._retry_or_give_up(m, elapsed, Signal.DEPROVISION)
            else:
                await self._move(
                    m, Signal.DEPROVISION, f"{m.desired.removesuffix('ed')} requested", attempts=1
                )
            return
        if state == S.DEPROVISIONING:
            await self._deprovision(m, elapsed)
            return
        if state in (S.REGISTERED, S.PROVISIONED) and m.desired in ("provisioned", "reprovision"):
            await self._move(m, Signal.PROVISION, "provision requested", attempts=1, installed=False)
            if m.desired == "reprovision":
                await self._store.update_machine(m.name, desired="provisioned")
            return
        if state == S.FAILED and m.desired == "provisioned":
            if m.attempts == 0:  # the operator asked again: a fresh run, no backoff
                await self._move(m, Signal.PROVISION, "provision requested again", attempts=1)
            else:
                await self._retry_or_give_up(m, elapsed, Signal.RETRY)
            return
        budget = stage_timeout(state, self.timeouts)
        if budget is not None and elapsed > budget:
            await self._fail(m, self._timeout_reason(state, budget))
            return
        if state == S.POWERING_ON:
            await self._power_on(m)
        elif state == S.NETBOOTING:
            await self._check_netboot(m, since, elapsed)
        elif state in INSTALL_STATES:
            await self._check_trust(m)
        elif state == S.TRUSTED:
            await self._move(
                m, Signal.SETTLED, "installed and trusted", installed=True, desired="provisioned"
            )

    # -- stages -------------------------------------------------------------------------

    async def _power_on(self, m: MachineRecord) -> None:
        try:
            await self._power(m, "pxe_on")
        except Exception as exc:  # the driver's message says what is wrong
            await self._fail(m, f"power on failed: {exc}")
            return
        manual = m.bmc is None or m.bmc.driver == "manual"
        reason = (
            "no BMC: waiting for someone to power it on by hand" if manual else "set PXE once and powered on"
        )
        await self._move(m, Signal.POWERED_ON, reason)

    async def _check_netboot(self, m: MachineRecord, since: datetime, elapsed: float) -> None:
        t = self.timeouts
        seen = await self._store.list_events(machine=m.name, since=since, limit=200)
        kinds = {e.kind for e in seen}
        dhcp_at = min((e.at for e in seen if e.kind.startswith("dhcp.")), default=None)
        script_at = min((e.at for e in seen if e.kind == "boot.script"), default=None)
        if dhcp_at is None and "boot.script" not in kinds:
            if elapsed > t.dhcp:
                await self._fail(m, f"never PXE-booted: no DHCP request within {t.dhcp:.0f}s of power on")
            return
        if script_at is None:
            start = _aware(dhcp_at) or since
            if (utcnow() - start).total_seconds() > t.script:
                await self._fail(m, f"got DHCP but never fetched its iPXE script within {t.script:.0f}s")
            return
        start = _aware(script_at) or since
        if (utcnow() - start).total_seconds() > t.config:
            reason = f"fetched its iPXE script but not its config within {t.config:.0f}s"
            await self._fail(m, reason + " (kernel/initramfs boot failed?)")

    async def _check_trust(self, m: MachineRecord) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_trust_check.get(m.name, 0.0) < TRUST_POLL_S:
            return
        self._last_trust_check[m.name] = loop.time()
        verdict = await self._trust(m)
        if verdict.ok:
            await self._move(
                m, Signal.TRUSTED, verdict.reason or "node certificate chains to the cluster OS CA"
            )
        else:
            log.debug("trust check of %s: %s", m.name, verdict.reason)

    async def _retry_or_give_up(self, m: MachineRecord, elapsed: float, signal: Signal) -> None:
        delay = retry_delay(m.attempts, self.timeouts)
        if delay is None:
            await self._store.update_machine(
                m.name,
                desired="none",
                event=Event(
                    kind="machine.gave_up",
                    at=utcnow(),
                    machine=m.name,
                    severity=Severity.WARNING,
                    message=f"giving up after {m.attempts} attempt(s): {m.state_reason}",
                ),
            )
            return
        if elapsed >= delay:
            await self._move(
                m, signal, f"retry {m.attempts + 1} after: {m.state_reason}", attempts=m.attempts + 1
            )

    async def _deprovision(self, m: MachineRecord, elapsed: float) -> None:
        if elapsed > self.timeouts.deprovisioning:
            await self._fail(m, f"{DEPROVISIONING_FAILED}timed out")
            return
        try:
            await self._power(m, "off")
        except Exception as exc:
            await self._fail(m, f"{DEPROVISIONING_FAILED}power off failed: {exc}")
            return
        released = await self._store.release_machine(m.name, m.macs)
        desired = "provisioned" if m.desired == "reprovision" else "none"
        await self._move(
            m,
            Signal.DEPROVISIONED,
            f"powered off, {released} lease(s) released, config tokens revoked",
            installed=False,
            desired=desired,
            attempts=0,
        )

    # -- what the node says (Talos events, provisioner/telemetry) ----------------------

    async def node_reported(self, name: str, signal: Signal | None, message: str) -> bool:
        """Move a machine on its node's own report; `signal` None means the node reports an error.

        An error fails the install stages at once with the node's message; a signal the
        table does not allow in the machine's state (a late or repeated event) is ignored.
        """
        m = await self._store.get_machine(name)
        if m is None:
            return False
        state = S(m.state)
        if signal is None:
            if state not in INSTALL_STATES:
                return False
            await self._fail(m, f"node reports: {message}")
            return True
        if not is_legal(state, signal):
            return False
        fields: dict[str, object] = {"installed": True} if signal == Signal.INSTALLED else {}
        return await self._move(m, signal, f"node reports: {message}", **fields)

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _timeout_reason(state: S, budget: float) -> str:
        return f"{state.value} took longer than {budget:.0f}s"

    async def _move(self, m: MachineRecord, signal: Signal, reason: str, **fields: object) -> bool:
        before = S(m.state)
        after = next_state(before, signal)
        event = Event(
            kind="machine.transition",
            at=utcnow(),
            machine=m.name,
            severity=Severity.WARNING if after == S.FAILED else Severity.INFO,
            message=f"{before.value} -> {after.value}: {reason}",
            data={"from": before.value, "to": after.value, "signal": signal.value, "reason": reason},
        )
        moved = await self._store.transition(
            m.name, after.value, reason=reason, expect=[before.value], event=event, fields=dict(fields)
        )
        if moved:
            log.info("%s: %s -> %s (%s)", m.name, before.value, after.value, reason)
        return moved

    async def _fail(self, m: MachineRecord, reason: str) -> None:
        if is_legal(S(m.state), Signal.FAILED):
            await self._move(m, Signal.FAILED, reason)
        else:
            log.error("%s: cannot fail from %s: %s", m.name, m.state, reason)
