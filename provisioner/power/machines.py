"""Power by machine name: resolves a machine's BMC from the store and runs the action.

The daemon gives this to the web layer (`WebRuntime.power`) and the reconciler: the REST API calls
`power_action(name, action, ...)`, the reconciler calls it as its `PowerPort`
(`pxe_on`, `off`). The BMC password stays encrypted until the driver needs it
(`Secret.lazy`), and is never part of a result, event or error.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.power.base import (
    BmcCredentials,
    BootDevice,
    PowerAction,
    PowerFailedError,
    PowerState,
    Secret,
)
from provisioner.power.manual import manual_instruction
from provisioner.power.service import PowerResult, PowerService
from provisioner.store.records import MachineRecord
from provisioner.store.repository import Store, bmc_context

__all__ = ["MachinePower", "PowerFailedError"]

_API_ACTIONS = {
    "on": PowerAction.ON,
    "off": PowerAction.OFF,
    "cycle": PowerAction.CYCLE,
    "reset": PowerAction.RESET,
    "status": PowerAction.STATUS,
    "soft_off": PowerAction.SOFT_OFF,
    "bootdev": PowerAction.SET_BOOT_DEVICE,
}


class MachinePower:
    """Power actions addressed by machine name or record."""

    def __init__(self, store: Store, service: PowerService, events: EventSink) -> None:
        self._store = store
        self._service = service
        self._events = events

    async def credentials(self, machine: MachineRecord) -> BmcCredentials:
        """The machine's BMC credentials, password still sealed."""
        if machine.bmc is None:
            msg = f"machine {machine.name} has no BMC in the inventory"
            raise LookupError(msg)
        blob = await self._store.bmc_password_blob(machine.name)
        box, context = self._store.box, bmc_context(machine.name)
        password = Secret("") if blob is None else Secret.lazy(lambda: box.open_text(blob, context))
        options = dict(machine.bmc.options)
        options.setdefault("machine", machine.name)
        return BmcCredentials(
            driver=machine.bmc.driver,
            address=machine.bmc.address,
            port=machine.bmc.port,
            username=machine.bmc.username,
            password=password,
            options=options,
        )

    async def _run(self, machine: MachineRecord, action: PowerAction, **kw: object) -> PowerResult:
        creds = await self.credentials(machine)
        result = await self._service.run(creds, action, machine=machine.name, **kw)  # type: ignore[arg-type]
        if not result.ok:
            raise PowerFailedError(
                machine.name,
                str(action),
                kind=result.error_kind or "protocol",
                bmc=result.bmc,
                message=result.message,
                check=result.check,
            )
        return result

    async def power_action(self, machine_name: str, action: str, **kw: object) -> Mapping[str, object]:
        """The API's entry point (see provisioner.web.protocols.PowerService)."""
        machine = await self._store.get_machine(machine_name)
        if machine is None:
            raise KeyError(machine_name)
        if action not in _API_ACTIONS:
            msg = f"unknown power action {action!r}"
            raise ValueError(msg)
        if action == "bootdev":
            device = str(kw.get("device", "pxe"))
            if device not in ("pxe", "disk"):
                msg = "device must be pxe or disk"
                raise ValueError(msg)
            kw = {"device": BootDevice(device), "persistent": bool(kw.get("persistent", False))}
        result = await self._run(machine, _API_ACTIONS[action], **kw)
        out: dict[str, object] = {"ok": True, "bmc": result.bmc, "duration_s": round(result.duration_s, 3)}
        if result.state is not None:
            out["state"] = str(result.state)
        return out

    async def __call__(self, machine: MachineRecord, action: str) -> None:
        """The reconciler's PowerPort: `pxe_on` or `off`.

        A machine with no BMC in the inventory is powered by hand, as with the `manual`
        driver: the operator is told (an event), and PXE does the rest.
        """
        if machine.bmc is None:
            self._ask_operator(machine, action)
            return
        if action == "pxe_on":
            await self._run(machine, PowerAction.SET_BOOT_DEVICE, device=BootDevice.PXE, persistent=False)
            state = await self._state(machine)
            # A machine that is already on must restart to take the one-time PXE boot.
            await self._run(machine, PowerAction.RESET if state == PowerState.ON else PowerAction.ON)
        elif action == "off":
            if await self._state(machine) != PowerState.OFF:
                await self._run(machine, PowerAction.OFF)
        else:
            msg = f"unknown reconciler power action {action!r}"
            raise ValueError(msg)

    def _ask_operator(self, machine: MachineRecord, action: str) -> None:
        lines = (
            [
                manual_instruction(PowerAction.SET_BOOT_DEVICE, machine.name, device=BootDevice.PXE),
                manual_instruction(PowerAction.ON, machine.name),
            ]
            if action == "pxe_on"
            else [manual_instruction(PowerAction.OFF, machine.name)]
        )
        self._events.emit(
            Event(
                kind="power.manual",
                at=utcnow(),
                machine=machine.name,
                severity=Severity.WARNING,
                message="; ".join(lines),
                data={"action": action, "reason": "no BMC in the inventory"},
            )
        )

    async def _state(self, machine: MachineRecord) -> PowerState | None:
        return (await self._run(machine, PowerAction.STATUS)).state
