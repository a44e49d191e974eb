"""End to end through the libvirt backend once: libvirtd + virtualbmc instead of the lab's
own BMCs, the same daemon and settings. One BIOS worker (lab-w1) reaches Provisioned."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from lab import control, libvirt_backend
from lab.demo import LabStack

from .test_e2e import PROVISION_TIMEOUT, events, machines, serial

pytestmark = [pytest.mark.lab, pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="session", autouse=True)
def _reap_stale_labs() -> None:
    """Take down labs left by an earlier test run that was killed (kill -9)."""
    control.down_registered(stale_only=True)


@pytest.fixture(scope="module")
def libvirt_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    tmp = tmp_path_factory.mktemp("e2e-libvirt")
    stack = LabStack(
        state_dir=tmp / "lab",
        namespace=f"pve2e{secrets.token_hex(3)}",
        owner_pid=os.getpid(),
        machines=2,
        firmware="bios",
        backend="libvirt",
    )
    try:
        stack.up()
        yield stack
    finally:
        stack.down(keep_logs_in=tmp / "logs")
        assert not stack.state_dir.exists() or not any(stack.state_dir.iterdir())


def test_provision_one_machine_through_libvirt_and_virtualbmc(libvirt_stack: LabStack) -> None:
    stack = libvirt_stack
    state = control.status(stack.state_dir)
    assert state is not None and state[0].backend == "libvirt"
    run = stack.cli(
        "provision", "lab-w1", "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    m = machines(stack)["lab-w1"]
    assert m["state"] == "Provisioned", m
    log = serial(stack, "lab-w1")
    assert "LAB-AGENT: config fetched" in log
    assert "trustd certificate issued" in log
    assert "LAB-AGENT: serving 50000" in log
    kinds = [e["kind"] for e in events(stack, "lab-w1")]
    assert "dhcp.ack" in kinds and "boot.script" in kinds and "config.served" in kinds
    # the VM that booted is the libvirt domain virtualbmc powered on
    domstate = libvirt_backend.virsh(stack.state_dir, "domstate", "lab-w1")
    assert domstate.stdout.strip() == "running", domstate.stderr
    assert libvirt_backend.virsh(stack.state_dir, "domstate", "lab-cp1").stdout.strip() == "shut off"
    assert (stack.state_dir / "libvirt").is_dir()
