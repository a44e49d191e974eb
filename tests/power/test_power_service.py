"""The fake and manual drivers, the registry, and PowerService (retries, counters, events)."""

from __future__ import annotations

import pytest

from provisioner.events import MemoryEventSink
from provisioner.power import (
    BmcAuthFailed,
    BmcCredentials,
    BmcInsecure,
    BmcProtocolError,
    BmcUnsupported,
    BootDevice,
    FakePowerDriver,
    PowerAction,
    PowerDriver,
    PowerService,
    PowerState,
    Secret,
    make_driver,
    manual_instruction,
)
from provisioner.power.calls import BlockingCalls
from provisioner.power.ipmi import IpmiDriver
from provisioner.power.manual import ManualDriver
from provisioner.power.redfish import RedfishDriver
from provisioner.settings import PowerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_fake_delayed_transitions_and_boot_override() -> None:
    clock = Clock()
    fake = FakePowerDriver(transition_s=5, clock=clock)
    await fake.set_boot_device(BootDevice.PXE)
    await fake.on()
    assert await fake.status() is PowerState.OFF  # accepted, not yet on
    clock.now += 5
    assert await fake.status() is PowerState.ON
    assert fake.boots == [BootDevice.PXE]
    assert fake.boot is None  # a one-time override is used up by the boot
    await fake.set_boot_device(BootDevice.DISK, persistent=True)
    await fake.reset()
    await fake.reset()
    assert fake.boots == [BootDevice.PXE, BootDevice.DISK, BootDevice.DISK]
    await fake.soft_off()
    clock.now += 5
    assert await fake.status() is PowerState.OFF
    await fake.cycle()  # no effect when off
    clock.now += 5
    assert await fake.status() is PowerState.OFF
    assert fake.actions()[:3] == [PowerAction.SET_BOOT_DEVICE, PowerAction.ON, PowerAction.STATUS]
    assert fake.calls[0].kwargs == (("device", BootDevice.PXE), ("persistent", False), ("uefi", True))


async def test_fake_cycle_when_on_and_failures() -> None:
    clock = Clock()
    fake = FakePowerDriver(
        initial=PowerState.ON, transition_s=2, clock=clock, unsupported=frozenset({PowerAction.SOFT_OFF})
    )
    await fake.cycle()
    assert await fake.status() is PowerState.OFF
    clock.now += 2
    assert await fake.status() is PowerState.ON
    with pytest.raises(BmcUnsupported):
        await fake.soft_off()
    fake.fail_next(BmcAuthFailed("fake", "no"), action=PowerAction.OFF)
    assert await fake.status() is PowerState.ON  # only OFF was armed
    with pytest.raises(BmcAuthFailed):
        await fake.off()
    await fake.off()
    fake.broken = BmcProtocolError("fake", "broken")
    with pytest.raises(BmcProtocolError):
        await fake.status()


async def test_fake_call_delay_uses_injected_sleep() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fake = FakePowerDriver(call_delay_s=0.3, sleep=sleep)
    await fake.on()
    assert slept == [0.3]


async def test_manual_driver_tells_the_operator() -> None:
    events = MemoryEventSink()
    drv = ManualDriver(BmcCredentials("manual", options={"machine": "node-3"}), events)
    assert await drv.status() is PowerState.UNKNOWN
    await drv.set_boot_device(BootDevice.PXE)
    await drv.on()
    assert events.kinds() == ["power.manual", "power.manual"]
    line = "ACTION REQUIRED: power on node-3 by hand (no BMC); it is picked up when it PXE boots"
    assert events.events[-1].message == line
    assert drv.instructions[-1] == line
    assert events.events[-1].machine == "node-3"
    assert "network (PXE) for the next boot (UEFI" in drv.instructions[0]
    assert "every boot (legacy BIOS" in manual_instruction(
        PowerAction.SET_BOOT_DEVICE, "n", device=BootDevice.DISK, persistent=True, uefi=False
    )


def test_registry_picks_by_name() -> None:
    settings = PowerSettings()
    events = MemoryEventSink()
    calls = BlockingCalls(concurrency=1, timeout_s=1)
    try:
        kinds = {
            name: type(make_driver(BmcCredentials(name, "10.0.0.1"), settings, calls=calls, events=events))
            for name in ("ipmi", "redfish", "manual", "fake")
        }
        assert kinds == {
            "ipmi": IpmiDriver,
            "redfish": RedfishDriver,
            "manual": ManualDriver,
            "fake": FakePowerDriver,
        }
        for name in kinds:
            assert isinstance(
                make_driver(BmcCredentials(name), settings, calls=calls, events=events), PowerDriver
            )
        with pytest.raises(BmcUnsupported, match="unknown power driver 'wol'"):
            make_driver(BmcCredentials("wol"), settings, calls=calls, events=events)
    finally:
        calls.close()


async def test_service_success_counters_events_and_fake_state() -> None:
    events = MemoryEventSink()
    service = PowerService(PowerSettings(), events)
    await service.start()
    creds = BmcCredentials("fake", "rack1-n1", options={"initial": "off"}, password=Secret("S3ntinel"))
    assert (await service.run(creds, "on", machine="n1")).ok
    status = await service.run(creds, PowerAction.STATUS)
    assert status.state is PowerState.ON  # the same fake BMC across calls
    boot = await service.run(creds, "set_boot_device", device="disk", persistent=True, uefi=False)
    assert boot.ok
    await service.stop()
    assert service.counters()["calls"] == 3
    assert service.counters()["ok"] == 3
    assert events.kinds() == ["power.call"] * 3
    assert events.events[0].machine == "n1"
    assert events.events[1].data["state"] == "on"
    assert events.events[2].data == {
        "driver": "fake",
        "address": "rack1-n1",
        "port": None,
        "action": "set_boot_device",
        "device": "disk",
        "persistent": True,
        "uefi": False,
        "attempts": 1,
        "duration_ms": 0,
    }


async def test_service_retries_transient_only() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    events = MemoryEventSink()
    service = PowerService(PowerSettings(retries=2), events, sleep=sleep, backoff_s=1.0)
    await service.start()
    creds = BmcCredentials("fake", "n2")
    fake = service.driver(creds)
    assert isinstance(fake, FakePowerDriver)
    busy = BmcProtocolError("fake n2", "node busy", transient=True)
    fake.fail_next(busy)
    fake.fail_next(busy)
    result = await service.run(creds, "on")
    assert result.ok
    assert result.attempts == 3
    assert len(slept) == 2
    assert 0.5 <= slept[0] <= 1.0
    assert 1.0 <= slept[1] <= 2.0  # exponential, with jitter
    for _ in range(3):
        fake.fail_next(busy)
    exhausted = await service.run(creds, "off")
    assert (exhausted.ok, exhausted.attempts, exhausted.error_kind) == (False, 3, "protocol")
    fake.fail_next(BmcAuthFailed("fake n2", "password rejected"))
    denied = await service.run(creds, "off")
    assert (denied.ok, denied.attempts, denied.error_kind) == (False, 1, "auth")
    counters = service.counters()
    assert counters["retries"] == 4
    assert counters["failures_protocol"] == 1
    assert counters["failures_auth"] == 1
    assert events.events[-1].kind == "power.failed"
    assert events.events[-1].data["error"] == "auth"
    await service.stop()


async def test_service_survives_driver_bugs_and_flags_insecure() -> None:
    events = MemoryEventSink()
    service = PowerService(PowerSettings(retries=0), events)
    await service.start()
    creds = BmcCredentials("fake", "n3")
    fake = service.driver(creds)
    assert isinstance(fake, FakePowerDriver)
    fake.broken = KeyError("bug")  # type: ignore[assignment]
    bug = await service.run(creds, "status")
    assert bug.error_kind == "internal"
    fake.broken = BmcInsecure("fake n3", "BMC offers only IPMI 1.5 sessions")
    insecure = await service.run(creds, "status")
    assert insecure.error_kind == "insecure"
    assert events.events[-1].severity == "alert"
    unknown = await service.run(BmcCredentials("wol", "n4"), "on")
    assert unknown.error_kind == "unsupported"
    assert service.counters()["failures_internal"] == 1
    await service.stop()
    with pytest.raises(RuntimeError, match="start"):
        service.driver(creds)
