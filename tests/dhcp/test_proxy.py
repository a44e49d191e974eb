"""ProxyDHCP beside a real site DHCP server (dnsmasq): address from it, boot file from us."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.dhcp.netns import PYTHON, REPO, in_ns, segment, start_server, stop_server

pytestmark = pytest.mark.netns

MAC = "52:54:00:77:00:31"
UUID = "00000000-0000-4000-8000-525400770031"
MACHINES = [{"name": "r1-n31", "macs": ["52:54:00:99:99:99"], "uuid": UUID}]


def settings(only_4011: bool) -> str:
    return f"""
[dhcp]
mode = "proxy"
interfaces = ["br0"]
proxy_only_4011 = {"true" if only_4011 else "false"}
[http]
listen = "10.77.0.1:8080"
"""


@pytest.mark.parametrize("only_4011", [False, True], ids=["separate-host", "same-host-4011-only"])
def test_proxy_with_dnsmasq(tmp_path: Path, only_4011: bool) -> None:
    with segment() as seg:
        for role in ("s", "d", "c"):
            seg.add_ns(role)
        in_ns(seg.ns("s"), "ip", "link", "add", "br0", "type", "bridge")
        in_ns(seg.ns("s"), "ip", "link", "set", "br0", "up")
        seg.link("d", "vd", "s", "pd")
        seg.link("c", "vc", "s", "pc")
        for port in ("pd", "pc"):
            in_ns(seg.ns("s"), "ip", "link", "set", port, "master", "br0")
        seg.addr("s", "br0", "10.77.0.1/24")
        in_ns(seg.ns("c"), "ip", "link", "set", "vc", "address", MAC)
        # The site's DHCP server: on another host, or on ours (then we keep off port 67).
        site_role, site_if, site_ip = ("s", "br0", "10.77.0.1") if only_4011 else ("d", "vd", "10.77.0.2")
        if not only_4011:
            seg.addr("d", "vd", "10.77.0.2/24")
        dnsmasq = seg.spawn(
            site_role,
            [
                "dnsmasq",
                "--no-daemon",
                "--port=0",
                "--log-dhcp",
                f"--interface={site_if}",
                "--bind-interfaces",
                "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,600",
                f"--dhcp-leasefile={tmp_path}/dnsmasq.leases",
                "--no-resolv",
                "--no-hosts",
                "--no-ping",
                "--user=root",
                "--conf-file=/dev/null",
                f"--pid-file={tmp_path}/dnsmasq.pid",
            ],
        )

        time.sleep(0.5)  # dnsmasq logs to stderr; give it a moment to bind
        server = start_server(seg, "s", tmp_path, settings(only_4011), MACHINES, "--memory")
        res = in_ns(
            seg.ns("c"),
            "env",
            f"PYTHONPATH={REPO}",
            PYTHON,
            "-m",
            "tests.dhcp.pxe_client",
            "--iface",
            "vc",
            "--mac",
            MAC,
            "--uuid",
            UUID,
            "--proxy",
            "10.77.0.1",
            timeout=60,
        )
        result = json.loads(res.stdout.strip().splitlines()[-1])
        offers = result["offers"]
        address_offers = [o for o in offers if o["yiaddr"] != "0.0.0.0"]
        proxy_offers = [o for o in offers if o["yiaddr"] == "0.0.0.0"]
        assert {o["server_id"] for o in address_offers} == {site_ip}  # (a retransmit may repeat it)
        assert address_offers[0]["yiaddr"].startswith("10.77.0.1")
        if only_4011:
            assert proxy_offers == []  # nothing from us on port 67
        else:
            assert proxy_offers
            assert proxy_offers[0]["server_id"] == "10.77.0.1"
            assert proxy_offers[0]["vendor"] == "PXEClient"
            assert proxy_offers[0]["file"] == "snponly.efi"
        assert {a["yiaddr"] for a in result["acks"]} == {address_offers[0]["yiaddr"]}
        boot = result["boot_ack"]
        assert boot is not None
        assert boot["type"] == 5
        assert boot["yiaddr"] == "0.0.0.0"
        assert boot["file"] == "snponly.efi"
        assert boot["siaddr"] == "10.77.0.1"
        assert boot["bootfile"] == "snponly.efi"
        counters = stop_server(server)
        assert counters.get("ack", 0) == 0  # never a lease from proxy mode
        dnsmasq.kill()
        dnsmasq.wait(5)
