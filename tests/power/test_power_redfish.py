"""The Redfish driver against sushy-tools' emulator (fake driver, Basic auth)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from base64 import b64encode

import pytest
from power_fixtures import SENTINEL, Sushy, free_tcp_port

from provisioner.events import MemoryEventSink
from provisioner.power import (
    BmcAuthFailed,
    BmcCredentials,
    BmcProtocolError,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    PowerService,
    PowerState,
    Secret,
)
from provisioner.power.calls import BlockingCalls
from provisioner.power.redfish import RedfishDriver
from provisioner.settings import PowerSettings

# sushy-tools' fake driver applies a power change 1-11 s after the request.
TRANSITION_DEADLINE_S = 15


def creds(port: int, system: str | None, password: str = SENTINEL) -> BmcCredentials:
    options: dict[str, object] = {"scheme": "http"}
    if system is not None:
        options["system"] = system
    return BmcCredentials("redfish", "127.0.0.1", port, "admin", Secret(password), options=options)


def system_json(sushy: Sushy, system: str) -> dict[str, object]:
    """Read the system as the emulator shows it (the reference client here is plain HTTP)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{sushy.port}/redfish/v1/Systems/{system}",
        headers={"Authorization": "Basic " + b64encode(f"admin:{SENTINEL}".encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test URL
        return dict(json.load(response))


@pytest.fixture
def calls() -> BlockingCalls:
    pool = BlockingCalls(concurrency=4, timeout_s=5)
    yield pool
    pool.close()


async def wait_for(drv: RedfishDriver, state: PowerState) -> float:
    started = time.monotonic()
    while (now := await drv.status()) is not state:
        assert time.monotonic() - started < TRANSITION_DEADLINE_S, f"still {now}"
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def test_power_on_and_off(sushy: Sushy, calls: BlockingCalls) -> None:
    """Both transitions run at once (the emulator delays each by 1-11 s)."""
    to_on = RedfishDriver(creds(sushy.port, sushy.off_system), calls)
    to_off = RedfishDriver(creds(sushy.port, sushy.on_system), calls)
    assert await to_on.status() is PowerState.OFF
    assert await to_off.status() is PowerState.ON
    await to_on.on()
    await to_off.off()
    await asyncio.gather(wait_for(to_on, PowerState.ON), wait_for(to_off, PowerState.OFF))
    assert system_json(sushy, sushy.off_system)["PowerState"] == "On"
    assert system_json(sushy, sushy.on_system)["PowerState"] == "Off"


async def test_boot_override(sushy: Sushy, calls: BlockingCalls) -> None:
    drv = RedfishDriver(creds(sushy.port, sushy.off_system), calls)
    await drv.set_boot_device(BootDevice.PXE)
    boot = system_json(sushy, sushy.off_system)["Boot"]
    assert isinstance(boot, dict)
    assert boot["BootSourceOverrideTarget"] == "Pxe"
    assert boot["BootSourceOverrideMode"] == "UEFI"
    await drv.set_boot_device(BootDevice.DISK, uefi=False)
    boot = system_json(sushy, sushy.off_system)["Boot"]
    assert isinstance(boot, dict)
    assert boot["BootSourceOverrideTarget"] == "Hdd"
    assert boot["BootSourceOverrideMode"] == "Legacy"


async def test_cycle_not_offered(sushy: Sushy, calls: BlockingCalls) -> None:
    """sushy-tools lists no PowerCycle reset type: NotSupported, with a hint."""
    with pytest.raises(BmcUnsupported, match="PowerCycle") as caught:
        await RedfishDriver(creds(sushy.port, sushy.on_system), calls).cycle()
    assert "reset" in str(caught.value)


async def test_system_selection(sushy: Sushy, calls: BlockingCalls) -> None:
    with pytest.raises(BmcProtocolError, match="several systems"):
        await RedfishDriver(creds(sushy.port, None), calls).status()
    with pytest.raises(BmcProtocolError, match="not found"):
        await RedfishDriver(creds(sushy.port, "no-such-system"), calls).status()
    by_path = RedfishDriver(creds(sushy.port, f"/redfish/v1/Systems/{sushy.on_system}"), calls)
    assert await by_path.status() in {PowerState.ON, PowerState.OFF}


async def test_wrong_password_and_unreachable(sushy: Sushy) -> None:
    events = MemoryEventSink()
    service = PowerService(PowerSettings(timeout_s=3, retries=2), events)
    await service.start()
    try:
        wrong = await service.run(creds(sushy.port, sushy.on_system, "nope-" + SENTINEL), "status")
        gone = await service.run(creds(free_tcp_port(), sushy.on_system), "status")
    finally:
        await service.stop()
    assert wrong.error_kind == BmcAuthFailed.kind
    assert wrong.attempts == 1  # never retry a wrong password (account lockout)
    assert f"127.0.0.1:{sushy.port}" in wrong.message
    assert gone.error_kind == BmcUnreachable.kind
    assert "Redfish service" in gone.message
    for text in [wrong.message, gone.message, *(repr(e) for e in events.events)]:
        assert SENTINEL not in text
