"""Real iPXE (QEMU + Debian's iPXE ROM) against the live server: both stages, then the kernel.

The machine has two NICs and the inventory knows it only by the second one, so the NIC
loop in /boot.ipxe must work. The kernel (the host's own, any bzImage will do) prints its
command line on the serial port: that is where we check that `talos.config` survived
iPXE's `${...}` expansion intact.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import aiohttp
import pytest
from webenv import Env, add_cluster, add_machine, start_env

from provisioner.store.repository import Store

QEMU = shutil.which("qemu-system-x86_64")
KERNELS = sorted(Path("/boot").glob("vmlinuz-*"))
NIC0, NIC1 = "52:54:00:12:34:56", "52:54:00:12:34:57"
UUID = "6c1e3f1a-9a3b-4c55-8d0e-1f2a3b4c5d6e"

pytestmark = [pytest.mark.slow]


@pytest.fixture
async def qemu_env(sqlite_store: Store, state_dir: Path) -> Env:
    if not (QEMU and KERNELS):
        pytest.fail("needs qemu-system-x86 (with its iPXE ROMs) and a kernel in /boot")
    env = await start_env(sqlite_store, state_dir)
    # Guests reach the host's loopback as 10.0.2.2 through QEMU's user-mode network.
    env.app_ctx.ipxe.base_url = f"http://10.0.2.2:{env.server.port}"
    yield env  # type: ignore[misc]
    await env.server.stop()


OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
async def test_real_ipxe_boots_kernel_with_talos_config(qemu_env: Env, tmp_path: Path, firmware: str) -> None:
    env = qemu_env
    (tmp_path / "initramfs").write_bytes(b"\0" * 4096)
    await env.app_ctx.assets.add("host", KERNELS[-1], tmp_path / "initramfs")
    await add_cluster(env.store, asset_set="host", kernelArgs=["panic=-1"])
    await add_machine(env.store, "vm1", [NIC1], state="PoweringOn")
    await env.refresh()
    serial = tmp_path / "serial.log"
    boot = f"http://10.0.2.2:{env.server.port}/boot.ipxe"
    # As lab/vm.py: TCG (nested KVM is not reliable here) and QEMU's own iPXE option ROM.
    argv = [
        str(QEMU), "-accel", "tcg", "-m", "384", "-nographic", "-nodefaults", "-no-reboot",
        "-monitor", "none", "-serial", f"file:{serial}", "-boot", "order=n", "-uuid", UUID,
        "-netdev", f"user,id=n0,bootfile={boot}",
        "-device", f"virtio-net-pci,netdev=n0,mac={NIC0}",
        "-netdev", "user,id=n1",
        "-device", f"virtio-net-pci,netdev=n1,mac={NIC1},romfile=",
    ]  # fmt: skip
    if firmware == "uefi":
        shutil.copyfile(OVMF_VARS, tmp_path / "vars.fd")
        argv += [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={tmp_path / 'vars.fd'}",
        ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        line = ""
        for _ in range(360):
            await asyncio.sleep(0.5)
            text = serial.read_text(errors="replace") if serial.exists() else ""
            found = re.search(r"Command line: (.*)", text)
            if found:
                line = found.group(1).strip()
                break
            if proc.returncode is not None:
                break
        assert line, (
            (await proc.stderr.read()).decode()
            if proc.returncode is not None
            else serial.read_text(errors="replace")[-3000:]
        )
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    args = line.split()
    config = next(a for a in args if a.startswith("talos.config="))
    assert re.fullmatch(
        rf"talos\.config=http://10\.0\.2\.2:{env.server.port}/config\?t=[A-Za-z0-9_-]{{43}}&uuid=%24%7Buuid%7D&mac=%24%7Bmac%7D",
        config,
    ), config
    for required in ("talos.platform=metal", "slab_nomerge", "pti=on", "console=ttyS0", "panic=-1"):
        assert required in args
    # The EFI stub finds the initramfs by the name iPXE gave it.
    assert ("initrd=initramfs.xz" in args) == (firmware == "uefi")
    assert [e.data["efi"] for e in env.events.events if e.kind == "boot.script"] == [firmware == "uefi"]
    machine = await env.store.get_machine("vm1")
    assert machine is not None and machine.state == "Netbooting"
    kinds = [e for e in env.events.events if e.kind == "boot.script"]
    assert kinds and kinds[0].machine == "vm1"
    # The token in the kernel's command line is the one the server issued: Talos's fetch works.
    token = re.search(r"t=([^&]+)", config)
    assert token is not None
    env.rt.renderer = _render
    async with aiohttp.ClientSession() as http:
        url = f"{env.base}/config?mac={NIC1.replace(':', '%3A')}&t={token.group(1)}&uuid={UUID}"
        async with http.get(url) as r:
            # The request comes from 127.0.0.1, the address that fetched the script via QEMU's NAT.
            assert r.status == 200, await r.text()


async def _render(machine: object, cluster: object) -> bytes:
    return b"version: v1alpha1\n"
