"""Real UEFI firmware against our TFTP server: OVMF's own PXE client fetches snponly.efi.

edk2's PXE base code (UefiPxeBcDxe) asks for RFC 7440 windowsize (PcdPxeTftpWindowSize,
4 in OVMF builds) as well as blksize and tsize, so this is the one real-firmware client
that exercises our window path. Topology: one network namespace holding a tap device
(10.88.0.1/16), dnsmasq as DHCP only (TFTP off) pointing at 10.88.0.1, our server on
10.88.0.1:69 (bench/lib_tftp.py serve), and QEMU (TCG, as lab/ does: KVM inside this
VM fails) with OVMF on the tap, its NIC without an option ROM (`romfile=`) so that the
firmware's PXE client, not iPXE's, runs. About 10-20 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SNPONLY = Path("/usr/lib/ipxe/snponly.efi")
UNDIONLY = Path("/usr/lib/ipxe/undionly.kpxe")

pytestmark = [
    pytest.mark.lab,
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0
        or not OVMF_CODE.exists()
        or not SNPONLY.exists()
        or shutil.which("qemu-system-x86_64") is None,
        reason="needs root, OVMF, the ipxe package and QEMU",
    ),
]


@pytest.fixture
def tap_netns() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    ns, tap = f"pv-tftp-{tag}-fw", f"pvtf{tag}"
    try:
        for argv in (
            ["netns", "add", ns],
            ["-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"],
            ["-n", ns, "addr", "add", "10.88.0.1/16", "dev", tap],
            ["-n", ns, "link", "set", tap, "up"],
            ["-n", ns, "link", "set", "lo", "up"],
        ):
            subprocess.run(["ip", *argv], check=True, capture_output=True)
        yield ns, tap
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


async def _spawn(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


def _transfers(events: Path) -> list[dict[str, object]]:
    if not events.exists():
        return []
    return [json.loads(line) for line in events.read_text().splitlines() if line]


async def _boot(ns: str, tap: str, tmp_path: Path, boot_file: Path, firmware: list[str]):
    """Serve `boot_file`, boot a VM with `firmware` arguments, return the transfer events."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copyfile(boot_file, root / boot_file.name)
    events = tmp_path / "events.jsonl"
    in_ns = ("ip", "netns", "exec", ns)
    procs = [
        await _spawn(
            *in_ns, sys.executable, str(REPO / "bench" / "lib_tftp.py"), "serve",
            "--root", str(root), "--events", str(events),
        ),
        await _spawn(
            *in_ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
            f"--interface={tap}", "--bind-interfaces", "--user=root",
            f"--pid-file={tmp_path / 'dnsmasq.pid'}", f"--dhcp-leasefile={tmp_path / 'leases'}",
            "--dhcp-range=10.88.0.100,10.88.0.200,255.255.0.0,1h",
            f"--dhcp-boot={boot_file.name},,10.88.0.1",
        ),
    ]  # fmt: skip
    try:
        await asyncio.sleep(1.0)  # both servers bound before the firmware asks
        qemu = [
            "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-smp", "1",
            "-nographic", "-nodefaults", "-serial", f"file:{tmp_path / 'serial.log'}",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            *firmware, "-boot", "n",
        ]  # fmt: skip
        procs.append(await _spawn(*in_ns, *qemu))
        for _ in range(240):  # up to 60 s: firmware start, DHCP, then the download
            await asyncio.sleep(0.25)
            if any(e["outcome"] == "complete" for e in _transfers(events)):
                break
        return _transfers(events)
    finally:
        for proc in reversed(procs):
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def test_ovmf_pxe_fetches_snponly_with_windowsize(tap_netns, tmp_path: Path):
    ns, tap = tap_netns
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    firmware = [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
        # No option ROM: the firmware's own (edk2) PXE client runs, not iPXE's.
        "-device", "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:88:00:10",
    ]  # fmt: skip
    transfers = await _boot(ns, tap, tmp_path, SNPONLY, firmware)
    done = [e for e in transfers if e["outcome"] == "complete"]
    assert done, transfers
    first = done[0]
    assert first["file"] == "snponly.efi"
    assert first["bytes"] == SNPONLY.stat().st_size
    assert first["windowsize"] == 4  # edk2 PcdPxeTftpWindowSize
    assert first["blksize"] == 1468  # clamped to the tap's 1500-byte MTU
    # edk2 first asks for the size (OACK with tsize) and aborts: a probe, not an error.
    outcomes = {str(e["outcome"]) for e in transfers}
    assert outcomes <= {"complete", "probe"}, transfers


async def test_bios_ipxe_rom_fetches_undionly(tap_netns, tmp_path: Path):
    # SeaBIOS with QEMU's iPXE option ROM as the PXE stack: iPXE's TFTP client.
    ns, tap = tap_netns
    firmware = ["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:88:00:11"]
    transfers = await _boot(ns, tap, tmp_path, UNDIONLY, firmware)
    done = [e for e in transfers if e["outcome"] == "complete"]
    assert done, transfers
    assert done[0]["file"] == "undionly.kpxe"
    assert done[0]["bytes"] == UNDIONLY.stat().st_size
    assert {str(e["outcome"]) for e in transfers} <= {"complete", "probe"}, transfers
