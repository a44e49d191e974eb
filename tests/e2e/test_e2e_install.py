"""End to end: the lab node installs to its disk like Talos, reboots and boots the disk.

Lab VMs boot network first, so the reboot after install comes back to the daemon, which
must answer "boot from disk" (iPXE `exit`) and the firmware then boots the disk with no
config fetch. One worker per firmware (2 cores, TCG).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo import DEFAULT_INVENTORY, LabStack
from tests.e2e.test_e2e import (
    PROVISION_TIMEOUT,
    machines,
    serial,
    stack_fixture,
    wait_for,
)

pytestmark = [pytest.mark.lab, pytest.mark.e2e, pytest.mark.timeout(900)]


def provision_installs_and_boots_disk(stack: LabStack, name: str) -> None:
    run = stack.cli("provision", name, "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert machines(stack)[name]["state"] == "Provisioned"
    log = serial(stack, name)
    assert "LAB-AGENT: installing Talos to disk /dev/vda" in log, log[-3000:]
    assert "LAB-AGENT: install finished, rebooting" in log
    after_install = log.split("install finished, rebooting", 1)[1]
    # network first: iPXE ran again and left to the firmware, which booted the disk
    assert "iPXE" in after_install
    assert "LAB-AGENT: booted from disk; config loaded from STATE" in after_install
    assert "LAB-AGENT: config fetched" not in after_install
    assert "LAB-AGENT: serving 50000" in after_install
    assert log.count("LAB-AGENT: config fetched") == 1


def disk_bytes(stack: LabStack, name: str, tmp: Path) -> bytes:
    raw = tmp / f"{name}.raw"
    subprocess.run(
        ["qemu-img", "convert", "-U", "-O", "raw", str(stack.state_dir / f"{name}.disk.qcow2"), str(raw)],
        check=True,
    )
    data = raw.read_bytes()
    raw.unlink()
    return data


def power_cycle_boots_disk(stack: LabStack, name: str) -> None:
    """A power cycle of a Provisioned machine boots its disk and stays Provisioned."""
    before = serial(stack, name)
    stack.cli("power", "cycle", name)
    wait_for(
        lambda: serial(stack, name)[len(before) :].count("LAB-AGENT: serving 50000") >= 1,
        240,
        f"{name} to boot its disk again",
    )
    again = serial(stack, name)[len(before) :]
    assert "LAB-AGENT: booted from disk; config loaded from STATE" in again
    assert "config fetched" not in again
    assert machines(stack)[name]["state"] == "Provisioned"


@pytest.fixture(scope="module")
def bios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    yield from stack_fixture(tmp_path_factory, machines=2, firmware="bios")


def test_bios_install_reboot_boot_from_disk(bios: LabStack, tmp_path: Path) -> None:
    provision_installs_and_boots_disk(bios, "lab-w1")
    image = disk_bytes(bios, "lab-w1", tmp_path)
    assert b"EFI PART" in image[512:1024]  # a GPT header
    assert b"machine:" in image and b"token:" in image  # the config on STATE


def test_bios_power_cycle_boots_disk_without_config_fetch(bios: LabStack) -> None:
    power_cycle_boots_disk(bios, "lab-w1")


def test_missing_install_disk_fails_with_talos_message(bios: LabStack, tmp_path: Path) -> None:
    """An inventory naming a disk the machine lacks: the node fails at once, as Talos does."""
    inventory = tmp_path / "lab.yaml"
    text = DEFAULT_INVENTORY.read_text(encoding="utf-8")
    cp1 = text.index("name: lab-cp1")
    inventory.write_text(text[:cp1] + text[cp1:].replace("installDisk: /dev/vda", "installDisk: /dev/sdz", 1))
    bios.cli("inventory", "apply", str(inventory))
    start = len(serial(bios, "lab-cp1"))
    bios.cli("provision", "lab-cp1")
    wait_for(
        lambda: "LAB-AGENT: FAILED" in serial(bios, "lab-cp1")[start:], 240, "lab-cp1 to fail its install"
    )
    log = serial(bios, "lab-cp1")[start:]
    fetched = log.index("LAB-AGENT: config fetched")
    assert (
        "LAB-AGENT: FAILED error running phase 2 in install sequence: task 1/1: failed, "
        "lstat /dev/sdz: no such file or directory"
    ) in log[fetched:]
    assert "installing Talos" not in log
    bios.cli("power", "off", "lab-cp1")  # it idles failed; free the CPU for the next tests
