"""Boot and config-delivery policy: pure decisions over a machine record.

Theory of operation
-------------------
A known machine's stage-two script is one of three things:

- INSTALL: kernel + initramfs + a fresh one-time config token. Offered while the machine
  is being provisioned: state PoweringOn or Netbooting (the reconciler powered it on), or
  Registered with `desired == "provisioned"` (the operator powered it by hand: a machine
  without a BMC still works). Serving it moves the machine to Netbooting.
- DISK: `exit` or `sanboot`, per `spec.bootFromDisk`, only once the machine proved it
  installed (`MachineSummary.boot_from_disk`: installed, and the node reported its install
  finished: Rebooting, BootedFromDisk, Trusted or Provisioned). Never earlier
  (Sidero #961: deciding "boot from disk" before an install strands the machine).
- HOLD: anything else: back to the firmware's next boot device, no token issued.

The config itself is served only while the machine is in CONFIG_DELIVERY_STATES; this set
(the provisioning window) is defined once, with the lifecycle table in provisioner/lifecycle.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from provisioner.lifecycle import CONFIG_DELIVERY_STATES
from provisioner.model import Desired, MachineState
from provisioner.store.records import MachineRecord

__all__ = [
    "CONFIG_DELIVERY_STATES",
    "NETBOOT_STATES",
    "BootAction",
    "BootDecision",
    "decide_boot",
]


NETBOOT_STATES = frozenset({MachineState.POWERING_ON, MachineState.NETBOOTING})
"""States in which a script fetch means "the machine is netbooting now"."""

DISK_MODES = frozenset({"exit", "sanboot"})


class BootAction(enum.StrEnum):
    """What stage two tells the machine to do."""

    INSTALL = "install"
    DISK = "disk"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class BootDecision:
    """The decision and why; `disk_mode` is exit or sanboot for DISK."""

    action: BootAction
    reason: str
    disk_mode: str = "exit"


def decide_boot(machine: MachineRecord) -> BootDecision:
    """Decide a known machine's stage-two script (see the module docstring)."""
    summary = machine.summary()
    if not summary.pxe_allowed:
        return BootDecision(BootAction.HOLD, "pxe-disabled")
    if summary.boot_from_disk:
        mode = str(machine.spec.get("bootFromDisk", "exit"))
        return BootDecision(BootAction.DISK, "installed", mode if mode in DISK_MODES else "exit")
    if summary.state in NETBOOT_STATES:
        return BootDecision(BootAction.INSTALL, "provisioning")
    if summary.state == MachineState.REGISTERED and summary.desired == Desired.PROVISIONED:
        return BootDecision(BootAction.INSTALL, "provision-requested")
    return BootDecision(BootAction.HOLD, f"state-{summary.state.value}")
