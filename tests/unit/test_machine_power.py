"""MachinePower: power by machine name, on the real store and PowerService (fake driver)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.events import MemoryEventSink
from provisioner.inventory import apply_inventory, load_inventory
from provisioner.power.machines import MachinePower, PowerFailedError
from provisioner.power.service import PowerService
from provisioner.settings import PowerSettings
from provisioner.store.repository import Store

INVENTORY = """\
kind: Machine
name: withbmc
macs: [52:54:00:00:00:01]
bmc: {driver: fake, address: fake-1, username: u, password: SecretPw}
---
kind: Machine
name: nobmc
macs: [52:54:00:00:00:02]
"""


@pytest.fixture
async def power(sqlite_store: Store, tmp_path: Path) -> tuple[MachinePower, MemoryEventSink]:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    await apply_inventory(sqlite_store, load_inventory([path]))
    events = MemoryEventSink()
    service = PowerService(PowerSettings(timeout_s=2), events)
    await service.start()
    return MachinePower(sqlite_store, service, events), events


async def test_api_actions_by_name(power: tuple[MachinePower, MemoryEventSink]) -> None:
    mp, events = power
    assert (await mp.power_action("withbmc", "status"))["state"] == "off"
    await mp.power_action("withbmc", "on")
    assert (await mp.power_action("withbmc", "status"))["state"] == "on"
    result = await mp.power_action("withbmc", "bootdev", device="pxe", persistent=False)
    assert result["ok"] is True
    with pytest.raises(KeyError):
        await mp.power_action("nope", "on")
    with pytest.raises(ValueError, match="unknown power action"):
        await mp.power_action("withbmc", "explode")
    with pytest.raises(ValueError, match="pxe or disk"):
        await mp.power_action("withbmc", "bootdev", device="usb")
    with pytest.raises(LookupError, match="no BMC"):
        await mp.power_action("nobmc", "on")
    assert "SecretPw" not in repr(events.events)


async def test_reconciler_port_pxe_on_and_off(
    power: tuple[MachinePower, MemoryEventSink], sqlite_store: Store
) -> None:
    mp, _ = power
    machine = await sqlite_store.get_machine("withbmc")
    assert machine is not None
    await mp(machine, "pxe_on")
    assert (await mp.power_action("withbmc", "status"))["state"] == "on"
    await mp(machine, "pxe_on")  # already on: reset instead of a no-op power on
    await mp(machine, "off")
    assert (await mp.power_action("withbmc", "status"))["state"] == "off"
    with pytest.raises(ValueError, match="unknown reconciler power action"):
        await mp(machine, "dance")


async def test_machine_without_bmc_asks_the_operator(
    power: tuple[MachinePower, MemoryEventSink], sqlite_store: Store
) -> None:
    mp, events = power
    machine = await sqlite_store.get_machine("nobmc")
    assert machine is not None
    await mp(machine, "pxe_on")
    [asked] = [e for e in events.events if e.kind == "power.manual"]
    assert asked.machine == "nobmc"
    assert "nobmc" in asked.message and "PXE" in asked.message


async def test_bmc_failure_is_a_clear_error(sqlite_store: Store, tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        INVENTORY.replace("driver: fake, address: fake-1", "driver: ipmi, address: 127.0.0.1, port: 9")
    )
    await apply_inventory(sqlite_store, load_inventory([path]))
    service = PowerService(PowerSettings(timeout_s=1, retries=0), MemoryEventSink())
    await service.start()
    mp = MachinePower(sqlite_store, service, MemoryEventSink())
    with pytest.raises(PowerFailedError, match=r"ipmi 127\.0\.0\.1:9") as info:
        await mp.power_action("withbmc", "status")
    assert "SecretPw" not in str(info.value)
    await service.stop()
