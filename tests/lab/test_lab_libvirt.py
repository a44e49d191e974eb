"""The libvirt backend (lab/libvirt_backend.py): libvirtd in the lab namespace, one domain per
machine, virtualbmc per domain; ``lab down`` removes all of it, also after a kill -9 of ``up``."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lab_support import REPO, Lab, lab_options

from lab import control, libvirt_backend, net
from lab.machines import lab_machines
from lab.state import LabState, process_start_time


def libvirt_options(state_dir: Path, machines: int = 2, firmware: str = "bios") -> control.LabOptions:
    return dataclasses.replace(lab_options(state_dir, machines, firmware), backend="libvirt")


def virsh(state_dir: Path, *args: str) -> str:
    proc = libvirt_backend.virsh(state_dir, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def namespace_pids(namespace: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=True)
    return [int(w) for w in out.stdout.split()]


def qemu_pids(namespace: str) -> list[int]:
    found = []
    for pid in namespace_pids(namespace):
        try:
            if b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def mounts_mentioning(path: Path) -> list[str]:
    """Mounts of ``path`` (a bind mount's root, by its last three components, so that a tmpfs
    /tmp, whose mount roots are relative to it, matches too) in any process's mount namespace."""
    tail = "/".join(path.parts[-3:])
    found = []
    for info in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            text = info.read_text()
        except OSError:
            continue
        found += [line for line in text.splitlines() if tail in line]
    return found


def assert_all_gone(options: control.LabOptions, pids: list[int], starts: list[str]) -> None:
    assert not net.namespace_exists(options.namespace)
    for pid, start in zip(pids, starts, strict=True):
        assert process_start_time(pid) != start, f"process {pid} of the lab still runs"
    assert not options.state_dir.exists(), sorted(p.name for p in options.state_dir.rglob("*"))
    assert mounts_mentioning(options.state_dir) == []
    assert not (Path(os.environ.get("LAB_REGISTRY", "/run/pvlab")) / f"{options.namespace}.json").exists()


def test_domain_xml_follows_the_recipe() -> None:
    """Pure: the template renders the recipe in docs/testing.md for a machine."""
    machine = lab_machines(2)[1]
    text = libvirt_backend.domain_xml(
        machine, bridge="labbr0", serial_log=Path("/s/lab-w1.serial.log"), memory_mib=256
    )
    dom = ET.fromstring(text)  # noqa: S314 - our own template's output
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "lab-w1"
    assert dom.findtext("uuid") == machine.uuid
    assert dom.find("os/boot").get("dev") == "network"
    assert dom.find("os/bios").get("useserial") == "yes"
    assert dom.find("features/acpi") is not None and dom.find("features/apic") is not None
    nic = dom.find("devices/interface")
    assert nic.get("type") == "bridge"
    assert nic.find("source").get("bridge") == "labbr0"
    assert nic.find("target").get("dev") == machine.tap
    assert nic.find("mac").get("address") == machine.mac
    serial = dom.find("devices/serial")
    assert serial.get("type") == "file" and serial.find("source").get("path") == "/s/lab-w1.serial.log"
    entries = {e.get("name"): e.text for e in dom.iter("entry")}
    assert entries["serial"] == machine.serial


@pytest.mark.lab
def test_libvirt_lab_up_power_and_down(tmp_path: Path) -> None:
    options = libvirt_options(tmp_path / "state")
    pids: list[int] = []
    starts: list[str] = []
    try:
        state = control.up(options)
        lab = Lab(options, control.bmc_password(options.state_dir))
        pids = [p.pid for p in state.processes]
        starts = [p.start for p in state.processes]
        assert state.backend == "libvirt"
        assert {p.role for p in state.processes} == {"ra", "libvirtd", "bmcd-vbmcd"}
        assert all(p.alive() for p in state.processes)
        # libvirtd runs in the lab namespace with its private mounts (not visible here)
        assert set(pids) <= set(namespace_pids(options.namespace))
        libvirtd = next(p.pid for p in state.processes if p.role == "libvirtd")
        theirs = Path(f"/proc/{libvirtd}/mountinfo").read_text().splitlines()
        assert any(line.split()[4] == "/etc/libvirt" and "libvirt/etc" in line for line in theirs)
        assert len(mounts_mentioning(options.state_dir / "libvirt")) >= 5
        own = Path("/proc/self/mountinfo").read_text()
        assert "/".join(options.state_dir.parts[-2:]) not in own  # the mounts stay in libvirtd's
        listed = virsh(options.state_dir, "list", "--all", "--name").split()
        assert sorted(listed) == ["lab-cp1", "lab-w1"]
        assert virsh(options.state_dir, "domstate", "lab-w1") == "shut off"
        # virtualbmc: ipmitool power status / on / off, and the domain follows
        assert lab.ipmitool(6231, "power", "status").strip() == "Chassis Power is off"
        lab.ipmitool(6231, "chassis", "bootdev", "pxe")
        lab.ipmitool(6231, "power", "on")
        assert lab.ipmitool(6231, "power", "status").strip() == "Chassis Power is on"
        assert virsh(options.state_dir, "domstate", "lab-w1") == "running"
        assert virsh(options.state_dir, "domstate", "lab-cp1") == "shut off"
        master = lab.netns("ip", "-o", "link", "show", "dev", "labtap1").stdout
        assert "master labbr0" in master
        _, vms = control.status(options.state_dir) or (None, [])
        assert {vm.name: vm.power for vm in vms} == {"lab-cp1": "off", "lab-w1": "on"}
        deadline = time.monotonic() + 30
        serial = options.state_dir / "lab-w1.serial.log"
        while time.monotonic() < deadline and "iPXE" not in serial.read_text(errors="replace"):
            time.sleep(0.5)
        assert "iPXE" in serial.read_text(errors="replace")  # the NIC ROM network-boots
        lab.ipmitool(6231, "power", "off")
        assert lab.ipmitool(6231, "power", "status").strip() == "Chassis Power is off"
        assert virsh(options.state_dir, "domstate", "lab-w1") == "shut off"
        lab.ipmitool(6231, "power", "on")  # left on: `down` must stop it
        qemu = qemu_pids(options.namespace)
        assert len(qemu) == 1
        pids += qemu
        starts += [process_start_time(qemu[0]) or ""]
    finally:
        assert control.down(options.state_dir) or not options.state_dir.exists()
    assert_all_gone(options, pids, starts)


@pytest.mark.lab
def test_libvirt_down_after_sigkill_of_up(tmp_path: Path) -> None:
    """kill -9 of `lab up --backend libvirt --foreground` with a domain running: `lab down` cleans up."""
    options = libvirt_options(tmp_path / "state")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAB_BMC_PASSWORD": "crash-test"}
    argv = [sys.executable, "-m", "lab", "--state-dir", str(options.state_dir), "up", "--backend", "libvirt",
            "--machines", "2", "--namespace", options.namespace, "--foreground"]  # fmt: skip
    up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        assert up.stdout is not None
        seen = b""
        deadline = time.monotonic() + 90
        for line in up.stdout:
            seen += line
            if b"lab up: running" in line or time.monotonic() > deadline:
                break
        assert b"lab up: running" in seen, seen.decode(errors="replace")
        Lab(options, "crash-test").ipmitool(6230, "power", "on")
        state = LabState.load(options.state_dir)
        assert state is not None
        qemu = qemu_pids(options.namespace)
        assert len(qemu) == 1
        pids = [p.pid for p in state.processes] + qemu
        starts = [p.start for p in state.processes] + [process_start_time(qemu[0]) or ""]
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        assert all(process_start_time(p) == s for p, s in zip(pids, starts, strict=True))  # orphans remain
    finally:
        up.kill()
        up.wait(10)
        done = subprocess.run(
            [sys.executable, "-m", "lab", "--state-dir", str(options.state_dir), "down"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_all_gone(options, pids, starts)


@pytest.mark.lab
def test_libvirt_failed_up_cleans_up(tmp_path: Path) -> None:
    """The libvirt backend refuses UEFI after making the network: the failed `up` removes it."""
    options = libvirt_options(tmp_path / "state", firmware="uefi")
    with pytest.raises(control.LabError, match="BIOS firmware only"):
        control.up(options)
    assert not net.namespace_exists(options.namespace)
    assert LabState.load(options.state_dir) is None
    assert not options.state_dir.exists()
