"""The machine lifecycle as a transition table (pure: no I/O, no clock).

Theory of operation
-------------------
A provisioning run moves one machine through these states, each a stage with its own
timeout and a signal that ends it:

    Registered --provision--> PoweringOn          set next boot = PXE (once), power on
    PoweringOn --powered_on--> Netbooting         BMC accepted both calls (or: manual power)
    PoweringOn --script_fetched--> Netbooting     the machine fetched its install script
                                                  before the BMC answered (a fast POST)
    Registered --script_fetched--> Netbooting     powered by hand with desired=provisioned:
                                                  a machine without a BMC still works
    Netbooting --config_served--> ConfigServed    DHCP, iPXE script, then the one config fetch
    ConfigServed --installing--> Installing       the node's Talos events: phase install started
    Installing --installed--> Rebooting           ...the install finished (kexec/reboot phase);
                                                  from here its PXE boots answer "boot from disk"
    Rebooting --booted--> BootedFromDisk          ...a boot sequence started after the install
    (ConfigServed|Installing|Rebooting|BootedFromDisk) --trusted--> Trusted
                                                  the node's API port presents a certificate
                                                  chained to the cluster's OS CA (a node that
                                                  sends no events goes straight from ConfigServed)
    Trusted --settled--> Provisioned              recorded as installed: only now may a PXE
                                                  boot of it answer "boot from disk"

Any active stage may end in `Failed` (timeout or error, with the reason); a node's own
error event (install sequence failed, config load/validation error) fails the install
stages at once with the node's message. A failed run is
retried from PoweringOn with exponential backoff while attempts remain; then it stays
Failed until an operator asks again. This is what keeps the field's wipe/boot loops away
(Sidero #1321, Omni bare-metal #37): a retry is counted, bounded and recorded.

`deprovision` from any state goes through Deprovisioning (power off, release the lease,
revoke tokens) back to Registered. `reprovision` is deprovision followed by provision in
one request: the installed flag is cleared first, so the machine netboots again instead
of booting its old disk (Sidero #961 in reverse).

Rule 1: every move of `MachineState` goes through `move`, which asks `next_state` and
writes the new state and its event in one transaction (compare-and-set on the old
state). No other code writes a machine's state (tests/unit/test_state_owner.py checks
this). Other parts report *signals* (the web layer: script fetched, config served, config
render failed; the reconciler: powered on, trusted, ...); the table decides the move. An
illegal move raises `IllegalTransitionError`, which is our bug (a LocalProtocolError in
h11's terms), never the machine's. A signal that maps a state to itself (a second script
fetch while Netbooting) writes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from provisioner.events import Event, Severity
from provisioner.model import INSTALLED_STATES
from provisioner.model import MachineState as S
from provisioner.settings import LifecycleSettings
from provisioner.store.records import MachineRecord

__all__ = [
    "ACTIVE_STATES",
    "CONFIG_DELIVERY_STATES",
    "INSTALLED_STATES",
    "INSTALL_STATES",
    "TRANSITIONS",
    "IllegalTransitionError",
    "Signal",
    "StageTimeouts",
    "TransitionWriter",
    "is_legal",
    "move",
    "next_state",
    "retry_delay",
    "stage_timeout",
]


class Signal(enum.StrEnum):
    """What can happen to a machine."""

    PROVISION = "provision"  # operator asked (desired = provisioned)
    POWERED_ON = "powered_on"  # BMC set PXE once and powered on (or manual power requested)
    SCRIPT_FETCHED = "script_fetched"  # the machine fetched its iPXE install script (web layer)
    CONFIG_SERVED = "config_served"  # the machine fetched its config (web layer)
    INSTALLING = "installing"  # the node's events: the install phase started
    INSTALLED = "installed"  # the node's events: the install finished, it reboots
    BOOTED = "booted"  # the node's events: it booted again after the install
    TRUSTED = "trusted"  # the node presented a certificate chained to the OS CA
    SETTLED = "settled"  # recorded as installed
    FAILED = "failed"  # a stage timed out or errored
    RETRY = "retry"  # backoff over, attempts remain
    DEPROVISION = "deprovision"  # operator asked (desired = deprovisioned)
    DEPROVISIONED = "deprovisioned"  # power off + lease release + token revocation done
    DISCOVERED = "discovered"  # inventory registers a discovered machine


# (state, signal) -> new state. Anything absent is illegal.
TRANSITIONS: dict[tuple[S, Signal], S] = {
    (S.DISCOVERED, Signal.DISCOVERED): S.REGISTERED,
    (S.REGISTERED, Signal.PROVISION): S.POWERING_ON,
    (S.PROVISIONED, Signal.PROVISION): S.POWERING_ON,  # reprovision
    (S.FAILED, Signal.PROVISION): S.POWERING_ON,  # operator asked again: attempts reset
    (S.FAILED, Signal.RETRY): S.POWERING_ON,
    (S.POWERING_ON, Signal.POWERED_ON): S.NETBOOTING,
    (S.POWERING_ON, Signal.SCRIPT_FETCHED): S.NETBOOTING,
    (S.REGISTERED, Signal.SCRIPT_FETCHED): S.NETBOOTING,  # powered by hand (web/policy.py)
    (S.NETBOOTING, Signal.SCRIPT_FETCHED): S.NETBOOTING,  # a second fetch: stays, nothing written
    (S.NETBOOTING, Signal.CONFIG_SERVED): S.CONFIG_SERVED,
    (S.CONFIG_SERVED, Signal.TRUSTED): S.TRUSTED,
    (S.CONFIG_SERVED, Signal.INSTALLING): S.INSTALLING,
    (S.CONFIG_SERVED, Signal.INSTALLED): S.REBOOTING,  # the "installing" event was lost
    (S.INSTALLING, Signal.INSTALLED): S.REBOOTING,
    (S.REBOOTING, Signal.BOOTED): S.BOOTED_FROM_DISK,
    (S.INSTALLING, Signal.TRUSTED): S.TRUSTED,  # later events lost: the trust check decides
    (S.REBOOTING, Signal.TRUSTED): S.TRUSTED,
    (S.BOOTED_FROM_DISK, Signal.TRUSTED): S.TRUSTED,
    (S.INSTALLING, Signal.FAILED): S.FAILED,
    (S.REBOOTING, Signal.FAILED): S.FAILED,
    (S.BOOTED_FROM_DISK, Signal.FAILED): S.FAILED,
    (S.TRUSTED, Signal.SETTLED): S.PROVISIONED,
    (S.POWERING_ON, Signal.FAILED): S.FAILED,
    (S.NETBOOTING, Signal.FAILED): S.FAILED,
    (S.CONFIG_SERVED, Signal.FAILED): S.FAILED,
    (S.TRUSTED, Signal.FAILED): S.FAILED,
    (S.DEPROVISIONING, Signal.FAILED): S.FAILED,
    (S.DEPROVISIONING, Signal.DEPROVISIONED): S.REGISTERED,
}
for _state in (
    S.REGISTERED,
    S.POWERING_ON,
    S.NETBOOTING,
    S.CONFIG_SERVED,
    S.INSTALLING,
    S.REBOOTING,
    S.BOOTED_FROM_DISK,
    S.TRUSTED,
    S.PROVISIONED,
    S.FAILED,
):
    TRANSITIONS[(_state, Signal.DEPROVISION)] = S.DEPROVISIONING

INSTALL_STATES = frozenset({S.CONFIG_SERVED, S.INSTALLING, S.REBOOTING, S.BOOTED_FROM_DISK})
"""After the config fetch, before trust: the trust check runs and a node's error fails the run."""

ACTIVE_STATES = frozenset({S.POWERING_ON, S.NETBOOTING, *INSTALL_STATES, S.TRUSTED, S.DEPROVISIONING})
"""States in which the reconciler is driving the machine and a stage clock runs."""

CONFIG_DELIVERY_STATES = frozenset({S.NETBOOTING})
"""States in which a machine may fetch its config (the provisioning window)."""


class IllegalTransitionError(Exception):
    """A move the table does not allow: a bug in the caller."""


def next_state(state: S, signal: Signal) -> S:
    """The state after `signal` in `state`; raises IllegalTransitionError."""
    try:
        return TRANSITIONS[(state, signal)]
    except KeyError:
        msg = f"no transition from {state.value} on {signal.value}"
        raise IllegalTransitionError(msg) from None


def is_legal(state: S, signal: Signal) -> bool:
    """True if `signal` may happen in `state`."""
    return (state, signal) in TRANSITIONS


@dataclass(frozen=True, slots=True)
class StageTimeouts:
    """How long each stage may take before the run fails (seconds), and the retry policy.

    Defaults suit real servers (POST alone can take minutes); the lab uses shorter ones.
    """

    powering_on: float = 120.0
    dhcp: float = 600.0
    """Netbooting, until the first DHCP request of the machine."""
    script: float = 300.0
    """Netbooting, from DHCP until the machine fetched its iPXE script."""
    config: float = 900.0
    """Netbooting, from the script until the config fetch (kernel + initramfs download)."""
    trust: float = 1800.0
    """ConfigServed, until the node presents its certificate (install + first boot)."""
    installing: float = 900.0
    """Installing, until the node reports the install finished."""
    rebooting: float = 600.0
    """Rebooting, until the node reports it booted from its disk (firmware POST included)."""
    booted: float = 600.0
    """BootedFromDisk, until the node presents its certificate."""
    deprovisioning: float = 120.0
    max_attempts: int = 3
    retry_base_s: float = 30.0
    retry_max_s: float = 900.0

    @classmethod
    def from_settings(cls, s: LifecycleSettings) -> StageTimeouts:
        """The timeouts of the `[lifecycle]` settings."""
        return cls(
            powering_on=s.powering_on_s,
            dhcp=s.dhcp_s,
            script=s.script_s,
            config=s.config_s,
            trust=s.trust_s,
            installing=s.installing_s,
            rebooting=s.rebooting_s,
            booted=s.booted_s,
            deprovisioning=s.deprovisioning_s,
            max_attempts=s.max_attempts,
            retry_base_s=s.retry_base_s,
            retry_max_s=s.retry_max_s,
        )


def stage_timeout(state: S, timeouts: StageTimeouts) -> float | None:
    """The time budget of a whole stage (Netbooting: the sum of its three waits)."""
    return {
        S.POWERING_ON: timeouts.powering_on,
        S.NETBOOTING: timeouts.dhcp + timeouts.script + timeouts.config,
        S.CONFIG_SERVED: timeouts.trust,
        S.INSTALLING: timeouts.installing,
        S.REBOOTING: timeouts.rebooting,
        S.BOOTED_FROM_DISK: timeouts.booted,
        S.TRUSTED: timeouts.trust,
        S.DEPROVISIONING: timeouts.deprovisioning,
    }.get(state)


def retry_delay(attempts: int, timeouts: StageTimeouts) -> float | None:
    """Seconds to wait before attempt `attempts + 1`, or None when no attempt remains."""
    if attempts >= timeouts.max_attempts:
        return None
    return float(min(timeouts.retry_max_s, timeouts.retry_base_s * (2 ** max(0, attempts - 1))))


class TransitionWriter(Protocol):
    """The store operation `move` needs: a compare-and-set of the state with its event."""

    async def write_transition(
        self,
        name: str,
        to_state: str,
        *,
        expect: Sequence[str],
        reason: str,
        event: Event,
        fields: Mapping[str, object],
    ) -> bool:
        """Set the state (and `fields`) if the machine is in `expect`; add `event`; one transaction.

        False (nothing written) when the machine is gone or another actor moved it first.
        """
        ...


async def move(
    store: TransitionWriter,
    machine: MachineRecord,
    signal: Signal,
    reason: str,
    *,
    now: datetime,
    kind: str = "machine.transition",
    data: Mapping[str, object] | None = None,
    fields: Mapping[str, object] | None = None,
) -> bool:
    """Apply `signal` to `machine` as the table says: the one writer of machine states.

    Returns True when the machine moved (or the table keeps it where it is), False when
    another actor moved it first. `kind` names the event row (`config.served` for the
    config fetch, which the trust check reads back); `data` adds details to it.
    """
    before = S(machine.state)
    after = next_state(before, signal)
    if after == before and not fields:
        return True
    event = Event(
        kind=kind,
        at=now,
        machine=machine.name,
        severity=Severity.WARNING if after == S.FAILED else Severity.INFO,
        message=f"{before.value} -> {after.value}: {reason}",
        data={
            "from": before.value,
            "to": after.value,
            "signal": signal.value,
            "reason": reason,
            **(data or {}),
        },
    )
    return await store.write_transition(
        machine.name,
        after.value,
        expect=[before.value],
        reason=reason,
        event=event,
        fields=dict(fields or {}),
    )
