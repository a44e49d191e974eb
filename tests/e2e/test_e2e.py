"""End to end: real firmware in QEMU network-boots from `provisioner serve` in the lab.

Each stack is the same `LabStack` that `make demo` runs: the lab (namespace, bridge,
VMs, virtual IPMI BMCs), the daemon inside the namespace, the real CLI. Boots are
staggered by the test order and kept to 3-4 VMs at once (2 cores, TCG).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import control
from lab.demo import API_PORT, BRIDGE_IP, DEFAULT_INVENTORY, HTTP_PORT, LabStack
from lab.machines import lab_machines
from lab.report import first_attempt_problems

pytestmark = [pytest.mark.lab, pytest.mark.e2e, pytest.mark.timeout(900)]

PROVISION_TIMEOUT = "420"


@pytest.fixture(scope="session", autouse=True)
def _reap_stale_labs() -> None:
    """Take down labs left by an earlier test run that was killed (kill -9)."""
    control.down_registered(stale_only=True)


def make_stack(tmp: Path, **kw: Any) -> LabStack:
    return LabStack(
        state_dir=tmp / "lab", namespace=f"pve2e{secrets.token_hex(3)}", owner_pid=os.getpid(), **kw
    )


def stack_fixture(tmp_path_factory: pytest.TempPathFactory, **kw: Any) -> Iterator[LabStack]:
    tmp = tmp_path_factory.mktemp("e2e")
    stack = make_stack(tmp, **kw)
    try:
        stack.up()
        yield stack
    finally:
        stack.down(keep_logs_in=tmp / "logs")


def machines(stack: LabStack) -> dict[str, dict[str, Any]]:
    out = stack.cli("machines", "list", "--json", capture=True).stdout
    return {m["name"]: m for m in json.loads(out)}


def events(stack: LabStack, name: str) -> list[dict[str, Any]]:
    out = stack.cli("machines", "events", name, "--json", "--limit", "500", capture=True).stdout
    return list(json.loads(out))


def serial(stack: LabStack, name: str) -> str:
    path = stack.state_dir / f"{name}.serial.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def in_ns(stack: LabStack, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", stack.namespace, *argv], capture_output=True, text=True, check=False
    )


# -- full DHCP, BIOS firmware (SeaBIOS + QEMU's iPXE ROM) ----------------------------------


@pytest.fixture(scope="module")
def bios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    """Four VMs: the three of inventory/lab.yaml, and lab-w3 that the inventory lacks."""
    yield from stack_fixture(tmp_path_factory, machines=4, firmware="bios")


def test_provision_all_full_dhcp_bios(bios: LabStack) -> None:
    run = bios.cli("provision", "--all", "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True)
    state = machines(bios)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert sorted(state) == ["lab-cp1", "lab-w1", "lab-w2"]
    for name, m in state.items():
        assert m["state"] == "Provisioned", m
        assert m["installed"] is True
        log = serial(bios, name)
        assert "LAB-AGENT: config fetched" in log
        assert "LAB-AGENT: serving 50000" in log
        kinds = [e["kind"] for e in events(bios, name)]
        assert "dhcp.ack" in kinds and "boot.script" in kinds and "config.served" in kinds
    # workers got their certificates from our trustd; the control plane signs its own
    assert "trustd certificate issued" in serial(bios, "lab-w1")
    assert "trustd certificate issued" in serial(bios, "lab-w2")
    assert "signed with the OS CA from the config" in serial(bios, "lab-cp1")
    # full DHCP: each machine has its inventory address
    for vm in lab_machines(3):
        assert f"network up eth0 {vm.ip}" in serial(bios, vm.name) or f" {vm.ip} mac" in serial(bios, vm.name)
    # the summary table was printed with times per stage, ConfigServed included
    assert "Netbooting" in run.stdout and "TOTAL" in run.stdout
    for name in state:
        row = [line for line in run.stdout.splitlines() if line.startswith(f"│ {name} ")][-1]  # summary
        assert "│ - " not in row, row  # every stage ran, so every stage has a time
    # each machine got there on its FIRST attempt: one attempt, one boot, no agent failure
    # (issue 11: a trustd certificate from the future cost a worker a timeout and a retry)
    assert first_attempt_problems(bios.outcomes()) == []


def test_unknown_vm_gets_no_config(bios: LabStack) -> None:
    """lab-w3 is not in the inventory: recorded as Discovered, never given a config."""
    unknown = lab_machines(4)[3]
    password = control.bmc_password(bios.state_dir)
    power = in_ns(
        bios, "ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(unknown.bmc_port),
        "-U", "admin", "-P", password, "chassis", "power", "on",
    )  # fmt: skip
    assert power.returncode == 0, power.stderr

    def seen() -> bool:
        out = bios.cli("inventory", "discovered", "--json", capture=True).stdout
        return any(d["mac"] == unknown.mac for d in json.loads(out))

    wait_for(seen, 120, f"{unknown.name} to be recorded as discovered")
    time.sleep(10)  # give it time to try everything it would try
    log = serial(bios, unknown.name)
    assert "LAB-AGENT: config fetched" not in log
    assert unknown.name not in machines(bios)


def test_replayed_config_url_is_refused(bios: LabStack) -> None:
    match = re.search(r"LAB-AGENT: config url (\S+)", serial(bios, "lab-w1"))
    assert match, "the agent printed no config URL"
    url = match.group(1)
    replay = in_ns(bios, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url)
    assert replay.stdout in ("403", "404"), replay.stdout
    alerts = [e for e in events(bios, "lab-w1") if e["severity"] == "alert"]
    assert alerts, "a replayed config token raised no alert event"


def test_reprovision_a_provisioned_machine(bios: LabStack) -> None:
    before = serial(bios, "lab-w2").count("LAB-AGENT: config fetched")
    bios.mark_consoles()
    run = bios.cli(
        "reprovision", "lab-w2", "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert machines(bios)["lab-w2"]["state"] == "Provisioned"
    # it netbooted exactly once more (not its old disk, and no retry)
    assert serial(bios, "lab-w2").count("LAB-AGENT: config fetched") == before + 1
    outcome = next(o for o in bios.outcomes() if o.name == "lab-w2")
    assert first_attempt_problems([outcome]) == []
    # the exact path: deprovision, then one provisioning run through every stage
    trail = [
        e["data"].get("to") if e["kind"] == "machine.transition" else "ConfigServed"
        for e in reversed(events(bios, "lab-w2"))
        if e["kind"] in ("machine.transition", "config.served")
    ]
    after = trail[len(trail) - 1 - trail[::-1].index("Deprovisioning") :]
    assert after == [
        "Deprovisioning", "Registered", "PoweringOn", "Netbooting", "ConfigServed", "Trusted", "Provisioned",
    ], trail  # fmt: skip


def test_bmc_with_wrong_credentials_fails_with_its_reason(bios: LabStack, tmp_path: Path) -> None:
    text = DEFAULT_INVENTORY.read_text().replace(
        "port: 6232, username: admin, password: env:LAB_BMC_PASSWORD",
        "port: 6232, username: admin, password: wrong-pw",
    )
    inventory = tmp_path / "lab-wrong.yaml"
    inventory.write_text(text)
    bios.cli("inventory", "apply", str(inventory))
    run = bios.cli("reprovision", "lab-w2", "--wait", "--timeout", "240", check=False, capture=True)
    assert run.returncode == 1
    m = machines(bios)["lab-w2"]
    assert m["state"] == "Failed"
    assert "ipmi 127.0.0.1:6232" in m["state_reason"]
    assert "wrong-pw" not in run.stdout + json.dumps(events(bios, "lab-w2"))
    assert re.search(r"credential|password|authenticat", m["state_reason"], re.IGNORECASE), m["state_reason"]
    health = in_ns(bios, "curl", "-sf", f"http://{BRIDGE_IP}:{HTTP_PORT}/healthz")
    assert health.returncode == 0  # the daemon keeps running


# -- UEFI with the firmware's own PXE client: TFTP snponly.efi, then iPXE ---------------


@pytest.fixture(scope="module")
def uefi_pxe(bios: LabStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    """After the BIOS stack (module order keeps at most one lab booting at a time)."""
    bios.down(keep_logs_in=bios.state_dir.parent / "logs")
    yield from stack_fixture(tmp_path_factory, machines=2, firmware="uefi-pxe")


def test_uefi_native_pxe_then_ipxe(uefi_pxe: LabStack) -> None:
    vms = lab_machines(2)  # the stack's VMs (the inventory's third machine has none here)
    run = uefi_pxe.cli(
        "provision",
        *(vm.name for vm in vms),
        "--wait",
        "--timeout",
        PROVISION_TIMEOUT,
        check=False,
        capture=True,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    state = machines(uefi_pxe)
    # OVMF's own PXE client fetched snponly.efi over our TFTP before iPXE took over
    transfers = all_events(uefi_pxe, "tftp.transfer")
    assert any(
        "snponly.efi" in json.dumps(e["data"]) and e["data"].get("outcome") == "complete" for e in transfers
    ), transfers[-5:]
    # Every machine ends on its inventory address, and so did every boot stage before it:
    # firmware PXE (no option 61), iPXE (61 = 01+MAC) and the OS's udhcpc (its own 61).
    for vm in vms:
        assert state[vm.name]["state"] == "Provisioned", state[vm.name]
        assert network_up(uefi_pxe, vm.name, vm.ip, vm.mac) >= 1
        acked = [e["data"]["ip"] for e in events(uefi_pxe, vm.name) if e["kind"] == "dhcp.ack"]
        assert len(acked) >= 3, acked  # firmware, iPXE, OS
        assert set(acked) == {vm.ip}, acked
        assert lease_row(uefi_pxe, vm.ip) == (vm.mac, "bound", "01" + vm.mac.replace(":", ""))


def test_uefi_reprovision_holding_an_os_lease_gets_its_reservation(uefi_pxe: LabStack) -> None:
    """The OS's lease (option 61 of its own) is bound; the firmware PXE must still get .11."""
    vm = lab_machines(2)[1]
    assert machines(uefi_pxe)[vm.name]["state"] == "Provisioned"
    assert lease_row(uefi_pxe, vm.ip) == (vm.mac, "bound", "01" + vm.mac.replace(":", ""))
    before_acks = len([e for e in events(uefi_pxe, vm.name) if e["kind"] == "dhcp.ack"])
    before_boots = network_up(uefi_pxe, vm.name, vm.ip, vm.mac)
    before_tftp = len(snponly_transfers(uefi_pxe))
    run = uefi_pxe.cli(
        "reprovision", vm.name, "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert machines(uefi_pxe)[vm.name]["state"] == "Provisioned"
    # it netbooted again through the firmware's PXE client, and every stage got .11
    assert len(snponly_transfers(uefi_pxe)) > before_tftp
    acked = [e["data"]["ip"] for e in events(uefi_pxe, vm.name) if e["kind"] == "dhcp.ack"]
    assert len(acked) >= before_acks + 3, acked  # firmware, iPXE, OS once more
    assert set(acked) == {vm.ip}, acked
    assert network_up(uefi_pxe, vm.name, vm.ip, vm.mac) > before_boots
    assert lease_row(uefi_pxe, vm.ip) == (vm.mac, "bound", "01" + vm.mac.replace(":", ""))


def network_up(stack: LabStack, name: str, ip: str, mac: str) -> int:
    """How often the lab agent (the OS) came up on `ip` with `mac`."""
    return len(re.findall(rf"network up \S+ {re.escape(ip)} mac {re.escape(mac)}", serial(stack, name)))


def lease_row(stack: LabStack, ip: str) -> tuple[str, str, str] | None:
    """(mac, state, client id) of the daemon's lease row for `ip` (its SQLite database)."""
    with sqlite3.connect(stack.state_dir / "provisioner" / "provisioner.db", timeout=10) as conn:
        row = conn.execute("select mac, state, client_id from lease where ip = ?", (ip,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), str(row[2]))


def snponly_transfers(stack: LabStack) -> list[dict[str, Any]]:
    return [
        e
        for e in all_events(stack, "tftp.transfer")
        if "snponly.efi" in json.dumps(e["data"]) and e["data"].get("outcome") == "complete"
    ]


def all_events(stack: LabStack, kind: str) -> list[dict[str, Any]]:
    token = (stack.state_dir / "provisioner" / "api-token").read_text().strip()
    out = in_ns(
        stack, "curl", "-sf", "-H", f"Authorization: Bearer {token}",
        f"http://127.0.0.1:{API_PORT}/api/v1/events?kind={kind}&limit=200",
    )  # fmt: skip
    return list(json.loads(out.stdout)["items"]) if out.returncode == 0 else []
