"""Pure parts of the lab: machine table, RA bytes, QEMU argv, cpio, module order."""

from __future__ import annotations  # noqa: I001

import gzip
import json
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr

from lab.cpio import CpioEntry, newc_archive
from lab.initramfs import build_initramfs, find_kernel, module_load_order
from lab.machines import lab_machines
from lab.ra import is_router_solicit, router_advert
from lab.vm import VmFiles, qemu_argv
from pathlib import Path

pytestmark = pytest.mark.lab

if TYPE_CHECKING:
    pass  # noqa: TC005


def test_machine_table() -> None:
    """The identities inventory/lab.yaml is written from."""
    cp, w1, w2, w3 = lab_machines(4)
    assert (cp.name, cp.role, cp.mac, cp.uuid, cp.ip, cp.bmc_port, cp.tap) == (
        "lab-cp1", "controlplane", "52:54:00:77:00:10",
        "00000000-0000-4000-8000-525400770010", "10.77.0.10", 6230, "labtap0",
    )  # fmt: skip
    assert (w1.name, w1.mac, w1.uuid, w1.ip) == (
        "lab-w1", "52:54:00:77:00:11", "00000000-0000-4000-8000-525400770011", "10.77.0.11",
    )  # fmt: skip
    assert (w2.name, w2.mac, w2.bmc_port) == ("lab-w2", "52:54:00:77:00:12", 6232)
    assert (w3.name, w3.role, w3.mac) == ("lab-w3", "worker", "52:54:00:77:00:13")
    with pytest.raises(ValueError, match="machine count"):
        lab_machines(0)
    listed = subprocess.run(
        [sys.executable, "-m", "lab", "machines", "--count", "2"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
    ).stdout  # fmt: skip
    assert [row["mac"] for row in json.loads(listed)] == [cp.mac, w1.mac]


def test_router_advert_parses_as_one() -> None:
    """scapy reads our RA: prefix, flags, lifetime 0, source link-layer address."""
    ra = ICMPv6ND_RA(router_advert("fd77::/64", "52:54:00:77:00:01"))
    assert ra.routerlifetime == 0
    assert ra[ICMPv6NDOptSrcLLAddr].lladdr == "52:54:00:77:00:01"
    prefix = ra[ICMPv6NDOptPrefixInfo]
    assert (prefix.prefix, prefix.prefixlen, prefix.L, prefix.A) == ("fd77::", 64, 1, 1)
    assert is_router_solicit(bytes([133, 0, 0, 0, 0, 0, 0, 0]))
    assert not is_router_solicit(bytes([134, 0, 0, 0, 0, 0, 0, 0]))


@pytest.mark.parametrize("firmware", ["bios", "uefi", "uefi-pxe"])
def test_qemu_argv(firmware: str, tmp_path: Path) -> None:
    """TCG, 256 MiB, identity, tap, serial log; OVMF for UEFI; no NIC ROM for uefi-pxe."""
    machine = lab_machines(2)[1]
    argv = qemu_argv(machine, VmFiles.under(tmp_path, machine.name), firmware)
    line = " ".join(argv)
    for part in ("-accel tcg", "-m 256", "-nographic", "-nodefaults", f"-uuid {machine.uuid}",
                 "ifname=labtap1", f"mac={machine.mac}", "-boot order=n", "virtio-net-pci",
                 f"path={tmp_path}/lab-w1.serial.log"):  # fmt: skip
        assert part in line
    assert ("OVMF_CODE" in line) == (firmware != "bios")
    assert ("romfile=" in line) == (firmware == "uefi-pxe")
    # The VM's qcow2 disk, and network first: SeaBIOS by -boot, OVMF by bootindex.
    assert f"file={tmp_path}/lab-w1.disk.qcow2,if=none,id=disk0,format=qcow2" in line
    assert ("bootindex=1" in line) == (firmware != "bios")
    if firmware != "bios":
        assert "romfile=,bootindex=1" in line or f"mac={machine.mac},bootindex=1" in line
        assert "drive=disk0,bootindex=2" in line
        disk_first = " ".join(
            qemu_argv(machine, VmFiles.under(tmp_path, machine.name), firmware, boot="once=c,order=nc")
        )
        assert "drive=disk0,bootindex=1" in disk_first
    with pytest.raises(ValueError, match="firmware"):
        qemu_argv(machine, VmFiles.under(tmp_path, machine.name), "coreboot")


def test_newc_archive_reads_back_with_cpio() -> None:
    """GNU cpio lists what the writer put in, device node included."""
    archive = newc_archive([
        CpioEntry("dev", stat.S_IFDIR | 0o755),
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1),
        CpioEntry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n"),
        CpioEntry("sh", stat.S_IFLNK | 0o777, b"busybox"),
    ])  # fmt: skip
    listing = subprocess.run(
        ["cpio", "-itv"],
        input=archive,
        capture_output=True,
        check=True,
    ).stdout
    lines = listing.decode().splitlines()
    assert [line.split()[-1] if "->" not in line else line.split()[-3] for line in lines] == [
        "dev", "dev/console", "init", "sh",
    ]  # fmt: skip
    assert lines[1].startswith("crw-------")
    assert "5,   1" in lines[1]


def test_module_load_order_puts_dependencies_first() -> None:
    """modules.dep resolved depth-first; unknown (built-in) names are skipped."""
    dep = (
        "kernel/drivers/net/virtio_net.ko: "
        "kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n"
    )
    assert module_load_order(dep, ("virtio_net", "builtin_thing")) == [
        "kernel/net/core/failover.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/drivers/net/virtio_net.ko",
    ]


def test_initramfs_holds_agent_tools_and_drivers(tmp_path: Path) -> None:
    """The built image carries /init, busybox, curl, openssl, the loader and the NIC modules."""
    _, release = find_kernel()
    image = build_initramfs(tmp_path / "initrd", release)
    names = set(
        subprocess.run(["cpio", "-it"], input=gzip.decompress(image.read_bytes()),
                       capture_output=True, check=True).stdout.decode().split()
    )  # fmt: skip
    assert {"init", "bin/busybox", "usr/bin/curl", "usr/bin/openssl", "dev/console",
            "lib64/ld-linux-x86-64.so.2", "lib/modules/virtio_net.ko",
            "lib/modules/e1000.ko", "lib/modules/order"} <= names  # fmt: skip
