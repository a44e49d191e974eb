"""End to end: the lab node installs to its disk like Talos, reboots and boots the disk.

Lab VMs boot network first, so the reboot after install comes back to the daemon, which
must answer "boot from disk" (iPXE `exit`) and the firmware then boots the disk with no
config fetch. One worker per firmware (2 cores, TCG).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo import BRIDGE_IP, DEFAULT_INVENTORY, TRUSTD_PORT, LabStack
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


def secrets_on_disk(image: bytes) -> set[bytes]:
    """The machine token and every base64 PEM key of the config found in a disk image."""
    found = set(re.findall(rb"\n    token: ([0-9a-z]{6}\.[0-9a-z]{16})", image))
    found |= set(re.findall(rb"\n {8}key: (LS0t[A-Za-z0-9+/=]{40,})", image))
    return found


def import_assets(stack: LabStack, extra: str = "") -> None:
    node = stack.state_dir / "node"
    stack.cli(
        "assets", "import", "lab", "--replace", "--kernel", str(node / "vmlinuz"),
        "--initramfs", str(node / "initramfs.gz"),
        "--cmdline", f"lab.trustd={BRIDGE_IP}:{TRUSTD_PORT}{extra}",
    )  # fmt: skip


def test_wipe_system_leaves_no_token_or_key_then_reprovision(bios: LabStack, tmp_path: Path) -> None:
    """talos.experimental.wipe=system: no machine token, no CA key left in the image bytes.

    The daemon's own wipe run (issue 13 item 3) is not built yet: the wipe boot is made
    here by serving the asset set with the wipe argument and reprovisioning the machine.
    """
    before = secrets_on_disk(disk_bytes(bios, "lab-w1", tmp_path))
    assert any(b"." in s for s in before), before  # the machine token (a worker has no CA key)
    import_assets(bios, " talos.experimental.wipe=system")
    start = len(serial(bios, "lab-w1"))
    # a Provisioned machine's PXE requests are answered "boot from disk": reprovision makes
    # the daemon serve the (wipe) boot script again
    bios.cli("reprovision", "lab-w1")
    wait_for(
        lambda: "LAB-AGENT: powering off" in serial(bios, "lab-w1")[start:], 240, "lab-w1 to wipe its disk"
    )
    wiped = serial(bios, "lab-w1")[start:]
    assert "LAB-AGENT: finished resetting system disks: wiped META STATE EPHEMERAL BOOT EFI BIOS" in wiped
    wait_for(lambda: "off" in bios.cli("power", "status", "lab-w1", capture=True).stdout, 60, "power off")
    bios.cli("deprovision", "lab-w1", "--wait", "--timeout", "120", check=False)  # end that run
    bios.cli("power", "off", "lab-w1", check=False)
    image = disk_bytes(bios, "lab-w1", tmp_path)
    for secret in before:
        assert secret not in image, secret[:12]
    assert secrets_on_disk(image) == set()
    assert b"PRIVATE KEY" not in image and b"key: LS0t" not in image
    assert b"EFI PART" not in image[: 1 << 20]  # the GPT is gone too
    # then reprovision works: a fresh install from the network
    import_assets(bios)
    run = bios.cli(
        "reprovision", "lab-w1", "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True
    )
    assert run.returncode == 0, run.stdout[-3000:]
    again = serial(bios, "lab-w1")[start:]
    assert "LAB-AGENT: config fetched" in again and "LAB-AGENT: install finished, rebooting" in again
    assert "booted from disk; config loaded from STATE" in again
