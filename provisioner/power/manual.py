"""The manual driver: a machine without a BMC, powered by a person.

Every action becomes an instruction: a `power.manual` event (severity warning, so the
CLI's event stream and the web UI show it) whose message is the one line the CLI prints,
e.g. `ACTION REQUIRED: power on node-3 by hand (no BMC); it is picked up when it PXE
boots`. `status()` is always `UNKNOWN`: the provisioning run does not wait on the BMC but
on the machine itself appearing on the network (its DHCP/PXE request moves it on).
"""

from __future__ import annotations

import logging

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.power.base import BmcCredentials, BootDevice, PowerAction, PowerState

__all__ = ["ManualDriver", "manual_instruction"]

log = logging.getLogger(__name__)

_VERBS = {
    PowerAction.ON: "power on",
    PowerAction.OFF: "power off (hold the power button)",
    PowerAction.SOFT_OFF: "shut down",
    PowerAction.RESET: "reset",
    PowerAction.CYCLE: "power off, then on again",
}
_POWERS_UP = frozenset({PowerAction.ON, PowerAction.RESET, PowerAction.CYCLE})


def manual_instruction(
    action: PowerAction,
    machine: str,
    *,
    device: BootDevice | None = None,
    persistent: bool = False,
    uefi: bool = True,
) -> str:
    """The line shown to the operator for `action` on `machine` (pure; used by the CLI)."""
    if action is PowerAction.SET_BOOT_DEVICE:
        target = "network (PXE)" if device is BootDevice.PXE else "local disk"
        scope = "every boot" if persistent else "the next boot"
        firmware = "UEFI" if uefi else "legacy BIOS"
        return (
            f"ACTION REQUIRED: make {machine} boot from {target} for {scope} "
            f"({firmware}; firmware boot menu) - no BMC"
        )
    verb = _VERBS.get(action, str(action))
    tail = "; it is picked up when it PXE boots" if action in _POWERS_UP else ""
    return f"ACTION REQUIRED: {verb} {machine} by hand (no BMC){tail}"


class ManualDriver:
    """`PowerDriver` that asks a person. Never raises for lack of a BMC."""

    def __init__(self, credentials: BmcCredentials, events: EventSink) -> None:
        """`credentials.options["machine"]` names the machine in instructions."""
        self._creds = credentials
        self._events = events
        machine = credentials.options.get("machine") or credentials.address
        self.machine = str(machine) if machine else "the machine"
        self.instructions: list[str] = []

    @property
    def credentials(self) -> BmcCredentials:
        """The (absent) BMC: driver `manual`."""
        return self._creds

    async def status(self) -> PowerState:
        """Always `UNKNOWN`: nobody can see the power LED from here."""
        return PowerState.UNKNOWN

    async def on(self) -> None:
        """Ask the operator to power the machine on."""
        self._instruct(PowerAction.ON)

    async def off(self) -> None:
        """Ask the operator to power the machine off."""
        self._instruct(PowerAction.OFF)

    async def soft_off(self) -> None:
        """Ask the operator to shut the machine down."""
        self._instruct(PowerAction.SOFT_OFF)

    async def reset(self) -> None:
        """Ask the operator to reset the machine."""
        self._instruct(PowerAction.RESET)

    async def cycle(self) -> None:
        """Ask the operator to power-cycle the machine."""
        self._instruct(PowerAction.CYCLE)

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = True
    ) -> None:
        """Ask the operator to pick the boot device in the firmware."""
        self._instruct(PowerAction.SET_BOOT_DEVICE, device=device, persistent=persistent, uefi=uefi)

    def _instruct(
        self,
        action: PowerAction,
        *,
        device: BootDevice | None = None,
        persistent: bool = False,
        uefi: bool = True,
    ) -> None:
        line = manual_instruction(action, self.machine, device=device, persistent=persistent, uefi=uefi)
        self.instructions.append(line)
        log.warning("%s", line)
        self._events.emit(
            Event(
                kind="power.manual",
                at=utcnow(),
                machine=self.machine if self.machine != "the machine" else None,
                severity=Severity.WARNING,
                message=line,
                data={"action": str(action), "driver": "manual"},
            )
        )
