"""The reconciler's decision, pure: (machine, now, timeouts) -> the actions due.

Theory of operation
-------------------
`decide` looks at one machine record and returns what should happen now: a `Move` (a
lifecycle signal with the fields to set in the same transaction), a `Fail`, a `GiveUp`,
or one of the steps that need I/O (`PowerOn`, `CheckNetboot`, `CheckTrust`,
`Deprovision`). What a node says about itself (telemetry) goes through
`after_node_report`, which answers the move it asks for. The shell
(provisioner/reconciler.py) performs a step and hands its outcome to the matching pure
`after_*` function (or `netboot_verdict`), which returns the next action. No clock, no
store, no sockets here: every rule is testable with plain records and a fixed `now`
(tests/unit/test_reconciler_decide.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provisioner.lifecycle import (
    ACTIVE_STATES,
    INSTALL_STATES,
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
    "DEPROVISIONING_FAILED",
    "Action",
    "CheckNetboot",
    "CheckTrust",
    "Deprovision",
    "Fail",
    "GiveUp",
    "Move",
    "PowerOn",
    "TrustVerdict",
    "after_deprovision",
    "after_node_report",
    "after_power_on",
    "after_trust",
    "decide",
    "netboot_verdict",
    "wants_attention",
]

DEPROVISIONING_FAILED = "deprovisioning: "
"""Prefix of a failure reason recorded by a deprovisioning run (its retries count apart)."""


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """The outcome of one trust check."""

    ok: bool
    reason: str = ""


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
    if state in INSTALL_STATES:  # ConfigServed, or the node's own install stages
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


def after_node_report(m: MachineRecord, signal: Signal | None, message: str) -> Move | Fail | None:
    """The move a node's own report asks for (Talos events, provisioner/telemetry).

    `signal` None is the node reporting an error: it fails the install stages at once
    with the node's message. A signal the table does not allow in the machine's state
    (a late or repeated event) is ignored (None).
    """
    state = S(m.state)
    reason = f"node reports: {message}"
    if signal is None:
        return Fail(reason) if state in INSTALL_STATES else None
    if not is_legal(state, signal):
        return None
    # From Rebooting on, the node said its disk holds the install: PXE answers "disk".
    return Move(signal, reason, {"installed": True} if signal == Signal.INSTALLED else {})


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
