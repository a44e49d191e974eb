"""A relayed segment: ISC dhcrelay between the client and us; replies go unicast to giaddr."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.dhcp.netns import in_ns, segment, start_server, stop_server

pytestmark = pytest.mark.netns

SETTINGS = """
[dhcp]
mode = "full"
interfaces = ["vs"]
relay_agents = ["10.77.0.2", "10.78.0.1"]
[[dhcp.subnet]]
cidr = "10.77.0.0/24"
pool = "10.77.0.100-10.77.0.199"
gateway = "10.77.0.1"
[[dhcp.subnet]]
cidr = "10.78.0.0/24"
pool = "10.78.0.100-10.78.0.199"
gateway = "10.78.0.1"
dns = ["10.77.0.1"]
lease_time = 900
"""
MAC = "52:54:00:78:00:41"
MACHINES = [{"name": "r2-n41", "macs": [MAC], "ip": "10.78.0.41", "hostname": "r2-n41"}]


def test_dhcrelay_unicast_to_giaddr(tmp_path: Path) -> None:
    with segment() as seg:
        for role in ("s", "r", "c"):
            seg.add_ns(role)
        seg.link("s", "vs", "r", "rs")
        seg.link("r", "rc", "c", "vc")
        seg.addr("s", "vs", "10.77.0.1/24")
        seg.addr("r", "rs", "10.77.0.2/24")
        seg.addr("r", "rc", "10.78.0.1/24")
        in_ns(seg.ns("s"), "ip", "route", "add", "10.78.0.0/24", "via", "10.77.0.2")
        in_ns(seg.ns("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(seg.ns("c"), "ip", "link", "set", "vc", "address", MAC)
        server = start_server(
            seg, "s", tmp_path, SETTINGS, MACHINES, "--db-url", f"sqlite+aiosqlite:///{tmp_path}/leases.db"
        )
        relay = seg.spawn("r", ["dhcrelay", "-d", "-4", "-a", "-iu", "rs", "-id", "rc", "10.77.0.1"])
        time.sleep(1.0)
        out = tmp_path / "udhcpc.log"
        script = tmp_path / "udhcpc.sh"
        script.write_text(
            f'#!/bin/sh\necho "$1 ip=$ip router=$router lease=$lease hostname=$hostname" >> {out}\n'
        )
        script.chmod(0o755)
        in_ns(
            seg.ns("c"),
            "busybox",
            "udhcpc",
            "-i",
            "vc",
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "2",
            "-s",
            str(script),
            timeout=60,
        )
        bound = [line for line in out.read_text().splitlines() if line.startswith("bound")]
        assert bound == ["bound ip=10.78.0.41 router=10.78.0.1 lease=900 hostname=r2-n41"]
        # An unknown client behind the relay gets an address from the relayed subnet's pool.
        in_ns(seg.ns("c"), "ip", "link", "set", "vc", "address", "02:00:00:00:78:01")
        in_ns(
            seg.ns("c"),
            "busybox",
            "udhcpc",
            "-i",
            "vc",
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "2",
            "-s",
            str(script),
            timeout=60,
        )
        bound = [line for line in out.read_text().splitlines() if line.startswith("bound")]
        assert bound[-1].startswith("bound ip=10.78.0.100 router=10.78.0.1")
        counters = stop_server(server)
        assert counters["ack"] == 2
        assert counters.get("dropped_untrusted_relay", 0) == 0
        relay.kill()
        relay.wait(5)
