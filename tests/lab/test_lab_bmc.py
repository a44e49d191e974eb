"""The lab BMCs driven by real IPMI clients: ipmitool and pyghmi's Command."""

from __future__ import annotations

import json
import os
import sys
import time
import types

import pytest
from lab_support import REPO, Lab

from lab.bmc import LabServerSession, boot_argument
from lab.machines import lab_machines
from lab.state import process_start_time

pytestmark = pytest.mark.lab


def qemu_pid(lab: Lab, name: str) -> int | None:
    """The pid of VM ``name``'s QEMU if it runs."""
    pid_file = lab.options.state_dir / f"{name}.pid"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid = int(pid_file.read_text(encoding="ascii"))
        except (OSError, ValueError):
            time.sleep(0.1)
            continue
        return pid if process_start_time(pid) is not None else None
    return None


def qemu_cmdline(pid: int) -> list[str]:
    """The command line of process ``pid``."""
    with open(f"/proc/{pid}/cmdline", "rb") as handle:  # noqa: PTH123
        return handle.read().decode().split("\0")


def pyghmi(lab: Lab, port: int, *actions: str) -> list[dict[str, object]]:
    """Run pyghmi's client inside the lab namespace."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAB_BMC_PASSWORD": lab.password}
    client = str(REPO / "tests/lab/lab_pyghmi_client.py")
    proc = lab.netns(sys.executable, client, str(port), *actions, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_ipmitool_power_and_bootdev(lab: Lab) -> None:
    """ipmitool: bootdev pxe (once) lands in QEMU's -boot; power on starts QEMU, off stops it."""
    machine = lab_machines(2)[1]
    assert "Chassis Power is off" in lab.ipmitool(machine.bmc_port, "power", "status")
    lab.ipmitool(machine.bmc_port, "chassis", "bootdev", "pxe")
    param = lab.ipmitool(machine.bmc_port, "chassis", "bootparam", "get", "5")
    assert "Force PXE" in param
    assert "Options apply to only next boot" in param
    lab.ipmitool(machine.bmc_port, "power", "on")
    pid = qemu_pid(lab, machine.name)
    assert pid is not None
    argv = qemu_cmdline(pid)
    assert argv[argv.index("-boot") + 1] == "once=n,order=cn"
    assert argv[argv.index("-uuid") + 1] == machine.uuid
    assert f"mac={machine.mac}" in argv[argv.index("-device") + 1]
    assert "Chassis Power is on" in lab.ipmitool(machine.bmc_port, "power", "status")
    # a one-time override is used up by the boot it applied to
    assert "No override" in lab.ipmitool(machine.bmc_port, "chassis", "bootparam", "get", "5")
    lab.ipmitool(machine.bmc_port, "power", "off")
    assert process_start_time(pid) is None
    assert "Chassis Power is off" in lab.ipmitool(machine.bmc_port, "power", "status")


def test_ipmitool_wrong_password_is_refused(lab: Lab) -> None:
    """A wrong password opens no session."""
    machine = lab_machines(2)[0]
    argv = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(machine.bmc_port),
            "-U", "admin", "-P", "not-the-password", "-R", "1", "-N", "1",
            "power", "on"]  # fmt: skip
    proc = lab.netns(*argv, check=False)
    assert proc.returncode != 0
    assert qemu_pid(lab, machine.name) is None


def test_pyghmi_client_power_bootdev_reset_softoff(lab: Lab) -> None:
    """pyghmi's client (which proposes SHA-256 first) logs in and drives the VM."""
    machine = lab_machines(2)[0]
    results = pyghmi(lab, machine.bmc_port, "status", "bootdev-pxe", "bootdev", "power-on", "status")
    assert results[0] == {"status": {"powerstate": "off"}}
    assert results[2]["bootdev"]["bootdev"] == "network"  # type: ignore[index]
    assert results[4] == {"status": {"powerstate": "on"}}
    pid = qemu_pid(lab, machine.name)
    assert pid is not None
    results = pyghmi(lab, machine.bmc_port, "reset", "status", "power-off", "status")
    assert results[1] == {"status": {"powerstate": "on"}}
    assert results[3] == {"status": {"powerstate": "off"}}
    assert process_start_time(pid) is None
    # each power on and each reset starts a boot in the serial log (lab/markers.py)
    serial = (lab.options.state_dir / f"{machine.name}.serial.log").read_text(errors="replace")
    assert [line.split()[2] for line in serial.splitlines() if line.startswith("=== LAB-BMC:")] == [
        "power",
        "reset",
    ]


def test_boot_argument() -> None:
    """IPMI boot overrides map onto QEMU -boot values."""
    assert boot_argument("default", persistent=False) == "order=cn"
    assert boot_argument("network", persistent=False) == "once=n,order=cn"
    assert boot_argument("network", persistent=True) == "order=n"
    assert boot_argument("hd", persistent=True) == "order=c"


def _open_session_request(auth: int, integrity: int, confidentiality: int) -> bytearray:
    """An RMCP+ Open Session Request payload (IPMI 2.0 §13.17) with tag 7, session id 1234."""
    request = bytearray([7, 0, 0, 0]) + (1234).to_bytes(4, "little")
    for kind, algorithm in enumerate((auth, integrity, confidentiality)):
        request += bytearray([kind, 0, 0, 8, algorithm, 0, 0, 0])
    return request


def test_unsupported_cipher_proposal_gets_status_0x11() -> None:
    """SHA-256 (suite 17, pyghmi's first try) is refused with 'no cipher suite match'."""
    session = types.SimpleNamespace()
    request = _open_session_request(3, 4, 1)
    response = LabServerSession.create_open_session_response(session, request)  # type: ignore[arg-type]
    assert response[:2] == bytearray([7, 0x11])
    assert response[4:8] == request[4:8]
