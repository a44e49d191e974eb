"""`provisioner dhcp probe IFACE` lists every server on the segment (ours and a rogue dnsmasq)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.dhcp.netns import REPO, in_ns, segment, start_server, stop_server

pytestmark = pytest.mark.netns

SETTINGS = """
[dhcp]
mode = "full"
interfaces = ["br0"]
[[dhcp.subnet]]
cidr = "10.77.0.0/24"
pool = "10.77.0.100-10.77.0.120"
gateway = "10.77.0.1"
lease_time = 900
"""


def test_probe_lists_every_server(tmp_path: Path) -> None:
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
        seg.addr("d", "vd", "10.77.0.2/24")
        server = start_server(seg, "s", tmp_path, SETTINGS, [], "--memory")
        rogue = seg.spawn(
            "d",
            [
                "dnsmasq",
                "--no-daemon",
                "--port=0",
                "--interface=vd",
                "--bind-interfaces",
                "--dhcp-range=10.77.0.200,10.77.0.210,255.255.255.0,300",
                "--no-resolv",
                "--no-hosts",
                "--no-ping",
                "--user=root",
                "--conf-file=/dev/null",
                f"--dhcp-leasefile={tmp_path}/rogue.leases",
                f"--pid-file={tmp_path}/rogue.pid",
            ],
        )
        time.sleep(1.0)
        res = in_ns(
            seg.ns("c"),
            str(REPO / ".venv/bin/provisioner"),
            "dhcp",
            "probe",
            "vc",
            "--timeout",
            "2",
            "--json",
            timeout=60,
        )
        answers = json.loads(res.stdout)
        by_server = {a["server_id"]: a for a in answers}
        assert set(by_server) == {"10.77.0.1", "10.77.0.2"}
        assert by_server["10.77.0.1"]["yiaddr"].startswith("10.77.0.1")
        assert by_server["10.77.0.1"]["lease_time"] == 900
        assert by_server["10.77.0.2"]["lease_time"] == 300
        table = in_ns(
            seg.ns("c"),
            str(REPO / ".venv/bin/provisioner"),
            "dhcp",
            "probe",
            "vc",
            "--timeout",
            "2",
            timeout=60,
        ).stdout
        assert "10.77.0.1" in table and "10.77.0.2" in table
        stop_server(server)
        rogue.kill()
        rogue.wait(5)
