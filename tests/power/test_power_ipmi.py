"""The IPMI driver against real BMC implementations, cross-checked with ipmitool.

Two kinds of BMC, which fail an unpatched pyghmi 1.6.19 client differently:
ipmi_sim rejects the suite-17 proposal (pyghmi retries with suite 3), the pyghmi BMC
answers a suite-17 proposal with suite 3 (pyghmi's client dies in `_got_rakp2`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from power_fixtures import SENTINEL, HostileBmc, IpmiSim, PyghmiBmc, free_udp_port, ipmitool
from pyghmi import exceptions as pyghmi_exceptions
from pyghmi.ipmi.private import session as pyghmi_session

from provisioner.events import MemoryEventSink
from provisioner.power import (
    BmcAuthFailed,
    BmcCredentials,
    BmcInsecure,
    BmcTimeout,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    PowerAction,
    PowerService,
    PowerState,
    Secret,
)
from provisioner.power.calls import BlockingCalls
from provisioner.power.ipmi import IpmiDriver
from provisioner.settings import PowerSettings


def creds(port: int, password: str, user: str = "admin") -> BmcCredentials:
    return BmcCredentials("ipmi", "127.0.0.1", port, user, Secret(password))


@pytest.fixture
def calls() -> BlockingCalls:
    pool = BlockingCalls(concurrency=4, timeout_s=8)
    yield pool
    pool.close()


async def test_ipmi_sim_power_and_bootdev(ipmi_sim: IpmiSim, calls: BlockingCalls) -> None:
    drv = IpmiDriver(creds(ipmi_sim.port, ipmi_sim.password), calls)
    assert await drv.status() is PowerState.OFF
    assert drv.last_cipher_suite == 3  # ipmi_sim rejected suite 17; we run suite 3
    await drv.on()
    assert "0x20 set power 1" in ipmi_sim.calls()
    assert await drv.status() is PowerState.ON
    assert "Chassis Power is on" in ipmitool(ipmi_sim.port, ipmi_sim.password, "chassis", "power", "status")
    await drv.set_boot_device(BootDevice.PXE)
    assert ipmi_sim.calls()[-1] == "0x20 set boot pxe"
    await drv.set_boot_device(BootDevice.DISK, uefi=False)
    assert ipmi_sim.calls()[-1] == "0x20 set boot default"  # ipmi_sim's name for "force disk"
    await drv.off()
    assert ipmi_sim.calls()[-1] == "0x20 set power 0"
    assert "Chassis Power is off" in ipmitool(ipmi_sim.port, ipmi_sim.password, "chassis", "power", "status")


def test_unpatched_pyghmi_fails_against_pyghmi_bmc(pyghmi_bmc: PyghmiBmc) -> None:
    """The snag we work around (docs/testing.md): plain pyghmi cannot log in to a pyghmi BMC."""
    with pytest.raises((struct.error, pyghmi_exceptions.IpmiException)):
        pyghmi_session.Session(bmc="127.0.0.1", userid="admin", password=SENTINEL, port=pyghmi_bmc.port)


async def test_pyghmi_bmc_power_and_bootdev(pyghmi_bmc: PyghmiBmc, calls: BlockingCalls) -> None:
    drv = IpmiDriver(creds(pyghmi_bmc.port, pyghmi_bmc.password), calls)
    assert await drv.status() is PowerState.OFF
    assert drv.last_cipher_suite == 3  # the BMC answered our suite-17 proposal with suite 3
    await drv.on()
    assert await drv.status() is PowerState.ON
    assert "Chassis Power is on" in ipmitool(pyghmi_bmc.port, SENTINEL, "chassis", "power", "status")
    for action in (drv.reset, drv.cycle, drv.soft_off):
        await action()
    assert pyghmi_bmc.ops() == ["status", "on", "status", "status", "reset", "cycle", "soft_off"]

    await drv.set_boot_device(BootDevice.PXE, persistent=True, uefi=True)
    out = ipmitool(pyghmi_bmc.port, SENTINEL, "chassis", "bootparam", "get", "5")
    assert "Force PXE" in out
    assert "Options apply to all future boots" in out
    assert "BIOS EFI boot" in out
    await drv.set_boot_device(BootDevice.DISK)  # once, UEFI
    out = ipmitool(pyghmi_bmc.port, SENTINEL, "chassis", "bootparam", "get", "5")
    assert "Force Boot from default Hard-Drive" in out
    assert "Options apply to only next boot" in out
    bootopts = [e["data"] for e in pyghmi_bmc.entries() if e["op"] == "bootopt"]
    assert bootopts[-2:] == [[3, 8], [5, 0xA0, 0x08, 0, 0, 0]]


async def test_unsupported_cycle(make_pyghmi_bmc: Callable[..., PyghmiBmc], calls: BlockingCalls) -> None:
    bmc = make_pyghmi_bmc("--no-cycle")
    drv = IpmiDriver(creds(bmc.port, bmc.password), calls)
    with pytest.raises(BmcUnsupported, match="invalid data field"):
        await drv.cycle()
    await drv.on()  # the session and the BMC are fine afterwards
    assert bmc.ops() == ["on"]


@pytest.mark.parametrize("kind", ["sim", "pyghmi"])
async def test_wrong_password_fails_fast(
    kind: str, request: pytest.FixtureRequest, calls: BlockingCalls
) -> None:
    port = (
        request.getfixturevalue("ipmi_sim").port
        if kind == "sim"
        else request.getfixturevalue("pyghmi_bmc").port
    )
    drv = IpmiDriver(creds(port, "wrong-" + SENTINEL[:8]), calls)
    started = time.monotonic()
    with pytest.raises(BmcAuthFailed) as caught:
        await drv.status()
    assert time.monotonic() - started < 2
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "password" in str(caught.value)
    assert SENTINEL[:8] not in str(caught.value)


async def test_unknown_user_on_ipmi_sim(ipmi_sim: IpmiSim, calls: BlockingCalls) -> None:
    with pytest.raises(BmcAuthFailed, match="user name"):
        await IpmiDriver(creds(ipmi_sim.port, ipmi_sim.password, user="nobody"), calls).status()


async def test_unreachable_is_bounded(calls: BlockingCalls) -> None:
    """Nothing listens: pyghmi gives up after ~5 s and we say where to look."""
    port = free_udp_port()
    started = time.monotonic()
    with pytest.raises(BmcUnreachable, match="IPMI over LAN"):
        await IpmiDriver(creds(port, SENTINEL), calls).status()
    assert time.monotonic() - started < 8


async def test_black_hole_times_out_and_others_keep_working(
    pyghmi_bmc: PyghmiBmc,
) -> None:
    """A UDP socket that reads and never answers: BmcTimeout at our deadline, not later."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    pool = BlockingCalls(concurrency=4, timeout_s=1.5)
    try:
        dead = IpmiDriver(creds(hole.getsockname()[1], SENTINEL), pool)
        alive = IpmiDriver(creds(pyghmi_bmc.port, SENTINEL), pool)
        started = time.monotonic()
        stuck = asyncio.ensure_future(dead.status())
        assert await alive.status() is PowerState.OFF  # meanwhile, another BMC works
        with pytest.raises(BmcTimeout):
            await stuck
        assert time.monotonic() - started < 2.5
        assert hole.recv(4096)  # it did receive our login attempt
        with pytest.raises(BmcTimeout, match="still running"):
            await dead.status()  # the orphaned thread still owns this BMC: fail fast
        assert pool.counters()["orphaned"] == 1
    finally:
        hole.close()
        pool.close()


async def test_hang_mid_call(pyghmi_bmc: PyghmiBmc, make_pyghmi_bmc: Callable[..., PyghmiBmc]) -> None:
    """The BMC logs us in, then blocks on Get Chassis Status; the service keeps serving."""
    other = make_pyghmi_bmc()
    events = MemoryEventSink()
    service = PowerService(PowerSettings(timeout_s=1.5, retries=1), events)
    await service.start()
    try:
        pyghmi_bmc.hang.touch()
        hung = await service.run(creds(pyghmi_bmc.port, SENTINEL), PowerAction.STATUS)
        assert not hung.ok
        assert hung.error_kind == "timeout"
        assert hung.duration_s < 2.5
        ok = await service.run(creds(other.port, SENTINEL), "on")
        assert ok.ok
        assert other.ops() == ["on"]
        pyghmi_bmc.hang.unlink()  # the BMC recovers; so does the orphaned thread
        deadline = time.monotonic() + 20
        while service.counters()["threads_orphans_running"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        again = await service.run(creds(pyghmi_bmc.port, SENTINEL), "status")
        assert again.ok
        assert again.state is PowerState.OFF
        assert service.counters()["failures_timeout"] == 1
        assert events.kinds() == ["power.failed", "power.call", "power.call"]
        assert events.events[1].data["cipher_suite"] == 3
    finally:
        await service.stop()


async def test_ipmi15_only_bmc_is_refused(
    make_pyghmi_bmc: Callable[..., PyghmiBmc], calls: BlockingCalls
) -> None:
    bmc = make_pyghmi_bmc("--ipmi15-only")
    with pytest.raises(BmcInsecure, match=r"IPMI 1\.5"):
        await IpmiDriver(creds(bmc.port, SENTINEL), calls).status()
    assert bmc.entries() == []  # no session: no RAKP, no command


async def test_cipher_suite_0_is_refused(
    make_pyghmi_bmc: Callable[..., PyghmiBmc], calls: BlockingCalls
) -> None:
    bmc = make_pyghmi_bmc("--cipher0")
    events = MemoryEventSink()
    service = PowerService(PowerSettings(timeout_s=5), events)
    await service.start()
    try:
        result = await service.run(creds(bmc.port, SENTINEL), "on")
    finally:
        await service.stop()
    assert result.error_kind == "insecure"
    assert "authentication=0 integrity=0 confidentiality=0" in result.message
    assert bmc.entries() == []  # refused before RAKP1: nothing sent under cipher 0
    assert events.events[-1].severity == "alert"


async def test_password_never_leaks(pyghmi_bmc: PyghmiBmc, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events = MemoryEventSink()
    service = PowerService(PowerSettings(timeout_s=3, retries=0), events)
    await service.start()
    good = creds(pyghmi_bmc.port, SENTINEL)
    results = [
        await service.run(good, "status"),
        await service.run(good, "set_boot_device", device="pxe"),
        await service.run(creds(pyghmi_bmc.port, SENTINEL + "x"), "on"),
        await service.run(creds(free_udp_port(), SENTINEL), "off"),
    ]
    await service.stop()
    assert [r.ok for r in results] == [True, True, False, False]
    texts = [repr(good), str(good.password), caplog.text]
    texts += [repr(r) for r in results]
    texts += [repr(e) for e in events.events]
    for text in texts:
        assert SENTINEL not in text
    assert "***" in repr(good)


async def test_concurrent_calls_across_bmcs(
    ipmi_sim: IpmiSim, make_pyghmi_bmc: Callable[..., PyghmiBmc]
) -> None:
    """pyghmi shares one I/O loop between threads; many calls at once must all land."""
    first, second = make_pyghmi_bmc(), make_pyghmi_bmc()
    service = PowerService(PowerSettings(timeout_s=8, concurrency=3), MemoryEventSink())
    await service.start()
    targets = [
        creds(first.port, SENTINEL),
        creds(second.port, SENTINEL),
        creds(ipmi_sim.port, ipmi_sim.password),
    ]
    try:
        results = await asyncio.gather(
            *(service.run(target, action) for target in targets for action in ("on", "status") * 3)
        )
    finally:
        await service.stop()
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert first.ops().count("on") == 3
    assert second.ops().count("status") == 3
    assert ipmi_sim.calls().count("0x20 set power 1") == 3


def test_no_process_shows_the_password() -> None:
    """/proc/PID/cmdline is world-readable (ipmitool -P leaks there): our fixtures use env."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert SENTINEL.encode() not in cmdline.read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


@pytest.mark.parametrize(
    ("mode", "kind", "text"),
    [
        ("garbage", "unreachable", "no answer"),
        ("short-open", "insecure", "truncated RMCP+ Open Session Response"),
        ("short-rakp2", "protocol", "malformed RAKP2"),
    ],
)
async def test_malformed_bmc_answers(mode: str, kind: str, text: str) -> None:
    """Hostile or broken answers end the call with an error; nothing crashes or hangs."""
    bmc = HostileBmc(mode)
    service = PowerService(PowerSettings(timeout_s=8, retries=0), MemoryEventSink())
    await service.start()
    try:
        result = await service.run(creds(bmc.port, SENTINEL), "on")
    finally:
        await service.stop()
        bmc.close()
    assert (result.ok, result.error_kind) == (False, kind), result.message
    assert text in result.message
    assert 0x12 not in bmc.received or mode == "short-rakp2"  # no RAKP1 after a refusal
    assert 0x00 not in bmc.received  # no IPMI command was ever sent
