"""Boot lab VMs over the network into the lab agent, with stand-in peers (no provisioner).

dnsmasq (DHCP) hands iPXE an HTTP boot script; the stand-in HTTP server serves the Debian
kernel, the lab initramfs and per-MAC Talos-like configs; the trustd stand-in signs the
worker's CSR. The worker must end up serving, on 10.77.0.11:50000, a certificate chained to
the OS CA naming its address; the control plane signs its own with the CA key it was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from lab_support import REPO, Lab, make_os_ca, make_server_cert, talos_config, talos_token

from lab.initramfs import build_initramfs, find_kernel
from lab.machines import lab_machines

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.lab
HTTP_PORT = 8088
TRUSTD_PORT = 50001
BOOT_BUDGET_S = 90

BASE = f"http://10.77.0.1:{HTTP_PORT}"
# iPXE itself expands ${uuid} and ${mac} here (as in the provisioner's scripts); the agent
# then re-encodes the query as Talos does (its own substitution is tested in test_agent).
CMDLINE = (
    "initrd=initrd console=ttyS0 loglevel=4 talos.platform=metal "
    f"talos.config={BASE}/config?uuid=${{uuid}}&mac=${{mac}} lab.trustd=10.77.0.1:{TRUSTD_PORT}"
)
BOOT_SCRIPT = f"""#!ipxe
kernel {BASE}/vmlinuz {CMDLINE}
initrd --name initrd {BASE}/initrd
boot
"""


@pytest.fixture
def peers(lab: Lab, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """dnsmasq plus the HTTP/trustd stand-in inside the lab namespace; (served dir, token)."""
    served = tmp_path / "served"
    served.mkdir()
    kernel, _ = find_kernel()
    (served / "vmlinuz").symlink_to(kernel)
    build_initramfs(served / "initrd")
    (served / "boot.ipxe").write_text(BOOT_SCRIPT, encoding="ascii")
    ca_pem, ca_key = make_os_ca(served)
    make_server_cert(served, ca_pem, ca_key, "10.77.0.1", "trustd")
    token = talos_token()
    for machine in lab_machines(2):
        key = ca_key if machine.role == "controlplane" else None
        config = talos_config(machine.role, token, ca_pem, key, "https://10.77.0.1:6443")
        (served / f"config-{machine.mac.replace(':', '')}.yaml").write_text(config, encoding="ascii")
    hosts = [f"--dhcp-host={m.mac},{m.ip},{m.name}" for m in lab_machines(2)]
    dnsmasq = [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root",
        "--interface=labbr0", "--bind-interfaces", "--dhcp-authoritative",
        "--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h",
        f"--dhcp-leasefile={tmp_path / 'leases'}", "--dhcp-userclass=set:ipxe,iPXE",
        f"--dhcp-boot=tag:ipxe,http://10.77.0.1:{HTTP_PORT}/boot.ipxe", *hosts,
        # UEFI firmware's own PXE client (arch 7, not iPXE): TFTP snponly.efi, then iPXE.
        "--enable-tftp", "--tftp-root=/usr/lib/ipxe", "--log-facility=-",
        "--dhcp-match=set:efi64,option:client-arch,7",
        "--dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (tmp_path / "peers.log").open("wb")
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", lab.namespace, *argv],
            stdout=log,
            stderr=log,
            env=env,
        )
        for argv in (
            dnsmasq,
            [sys.executable, str(REPO / "tests/lab/lab_peers.py"), str(served), str(HTTP_PORT),
             str(TRUSTD_PORT), token],
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not (served / "peers.ready").exists():
            assert time.monotonic() < deadline, "stand-in peers did not start"
            assert all(p.poll() is None for p in procs), (tmp_path / "peers.log").read_text()
            time.sleep(0.1)
        yield served, token
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)
        log.close()


def wait_for_marker(log: Path, marker: str, deadline: float) -> str:
    """Wait until the serial log shows ``marker`` (or a FAILED marker); return the log."""
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if marker in text or "LAB-AGENT: FAILED" in text:
            return text
        time.sleep(0.5)
    return text


def peer_certificate(lab: Lab, ip: str) -> x509.Certificate:
    """Fetch the certificate a TLS server in the lab presents, from inside the namespace."""
    code = f"import ssl; print(ssl.get_server_certificate(({ip!r}, 50000), timeout=10))"
    out = lab.netns(sys.executable, "-c", code).stdout
    return x509.load_pem_x509_certificate(out.encode())


def test_bios_boot_worker_and_controlplane(lab: Lab, peers: tuple[Path, str]) -> None:
    """Both VMs netboot the agent; the worker via trustd, the control plane via its CA key."""
    served, _token = peers
    cp, worker = lab_machines(2)
    started = time.monotonic()
    deadline = started + BOOT_BUDGET_S
    lab.ipmitool(worker.bmc_port, "chassis", "bootdev", "pxe")
    lab.ipmitool(worker.bmc_port, "power", "on")
    lab.ipmitool(cp.bmc_port, "power", "on")
    state = lab.options.state_dir
    logs = {m.name: state / f"{m.name}.serial.log" for m in (cp, worker)}
    texts = {name: wait_for_marker(log, "LAB-AGENT: serving 50000", deadline) for name, log in logs.items()}
    for name, text in texts.items():
        assert "LAB-AGENT: serving 50000" in text, f"{name} did not finish:\n{text[-3000:]}"
    assert "LAB-AGENT: trustd certificate issued" in texts[worker.name]
    assert "LAB-AGENT: certificate signed with the OS CA" in texts[cp.name]
    assert time.monotonic() - started < BOOT_BUDGET_S

    requests = [json.loads(line) for line in (served / "requests.jsonl").read_text().splitlines()]
    configs = [r for r in requests if r["kind"] == "http" and r["path"] == "/config"]
    by_mac = {r["query"]["mac"][0]: r for r in configs}
    for machine in (cp, worker):
        request = by_mac[machine.mac]
        assert request["query"]["uuid"] == [machine.uuid]
        assert request["client"] == machine.ip
        # Talos re-encodes the query: keys sorted, ':' percent-encoded.
        assert request["raw_query"].startswith("mac=" + machine.mac.replace(":", "%3A") + "&uuid=")
    trustd = [r for r in requests if r["kind"] == "trustd"]
    assert len(trustd) == 1  # only the worker asks trustd
    assert trustd[0]["token_ok"]

    ca = x509.load_pem_x509_certificate((served / "ca.pem").read_bytes())
    for machine in (cp, worker):
        cert = peer_certificate(lab, machine.ip)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [machine.ip]


@pytest.mark.parametrize("lab", ["uefi", "uefi-pxe"], indirect=True)
def test_uefi_boot_worker_then_soft_off(lab: Lab, peers: tuple[Path, str]) -> None:
    """OVMF with iPXE's EFI ROM, and OVMF's own PXE client chaining snponly.efi, both reach
    the agent; then an IPMI soft off (ACPI power button) makes the guest power itself off."""
    served, _token = peers
    worker = lab_machines(2)[1]
    deadline = time.monotonic() + BOOT_BUDGET_S
    lab.ipmitool(worker.bmc_port, "power", "on")
    log = lab.options.state_dir / f"{worker.name}.serial.log"
    text = wait_for_marker(log, "LAB-AGENT: serving 50000", deadline)
    assert "LAB-AGENT: serving 50000" in text, text[-3000:]
    assert "LAB-AGENT: trustd certificate issued" in text
    if lab.options.firmware == "uefi-pxe":  # the vendor PXE path: firmware, TFTP, then iPXE
        assert "Start PXE over IPv4" in text
        assert "sent /usr/lib/ipxe/snponly.efi" in (served.parent / "peers.log").read_text()
    ca = x509.load_pem_x509_certificate((served / "ca.pem").read_bytes())
    peer_certificate(lab, worker.ip).verify_directly_issued_by(ca)

    lab.ipmitool(worker.bmc_port, "power", "soft")
    text = wait_for_marker(log, "LAB-AGENT: ACPI power button", time.monotonic() + 30)
    assert "LAB-AGENT: ACPI power button" in text
    off_deadline = time.monotonic() + 30
    while "off" not in lab.ipmitool(worker.bmc_port, "power", "status"):
        assert time.monotonic() < off_deadline, "the guest did not power off"
        time.sleep(0.5)
