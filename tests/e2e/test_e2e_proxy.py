"""End to end in proxyDHCP mode: the site's own DHCP server hands out addresses, we only boot.

The site server is dnsmasq in its own network namespace, joined to the lab bridge by a
veth pair: another host on the segment, as in a real datacenter.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo import LabStack

from .test_e2e import PROVISION_TIMEOUT, machines, serial, stack_fixture

pytestmark = [pytest.mark.lab, pytest.mark.e2e, pytest.mark.timeout(900)]

SITE_IP = "10.77.0.2"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabStack, Path]]:
    for stack in stack_fixture(tmp_path_factory, machines=2, firmware="bios", dhcp_mode="proxy"):
        site = f"pve2esite{secrets.token_hex(2)}"
        leases = stack.state_dir / "site-dnsmasq.leases"
        pid_file = stack.state_dir / "site-dnsmasq.pid"
        sh("ip", "netns", "add", site)
        try:
            ns = ["ip", "netns", "exec", stack.namespace]
            sh(*ns, "ip", "link", "add", "pvsite0", "type", "veth", "peer", "name", "pvsite1")
            sh(*ns, "ip", "link", "set", "pvsite1", "netns", site)
            sh(*ns, "ip", "link", "set", "pvsite0", "master", "labbr0", "up")
            sns = ["ip", "netns", "exec", site]
            sh(*sns, "ip", "link", "set", "lo", "up")
            sh(*sns, "ip", "addr", "add", f"{SITE_IP}/24", "dev", "pvsite1")
            sh(*sns, "ip", "link", "set", "pvsite1", "up")
            sh(
                *sns, "dnsmasq", "--conf-file=/dev/null", "--port=0", "--interface=pvsite1",
                "--dhcp-range=10.77.0.150,10.77.0.199,255.255.255.0,1h", "--dhcp-option=3,10.77.0.1",
                f"--dhcp-leasefile={leases}", f"--pid-file={pid_file}", "--dhcp-authoritative",
            )  # fmt: skip
            yield stack, leases
        finally:
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            subprocess.run(["ip", "netns", "del", site], check=False, capture_output=True)


def test_proxy_dhcp_beside_the_sites_dhcp_server(proxy: tuple[LabStack, Path]) -> None:
    stack, leases = proxy
    run = stack.cli(
        "provision", "lab-w1", "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert machines(stack)["lab-w1"]["state"] == "Provisioned"
    # the address came from the site's server (its pool), not from us...
    log = serial(stack, "lab-w1")
    match = re.search(r"LAB-AGENT: network up \S+ (10\.77\.0\.\d+)", log)
    assert match, log[-2000:]
    assert 150 <= int(match.group(1).rsplit(".", 1)[1]) <= 199
    assert "52:54:00:77:00:11" in leases.read_text()
    # ...and we handed out no address at all
    out = stack.cli("machines", "events", "lab-w1", "--json", "--limit", "500", capture=True).stdout
    kinds = [e["kind"] for e in json.loads(out)]
    assert "dhcp.ack" not in kinds
    assert "config.served" in kinds
    assert "trustd certificate issued" in log
