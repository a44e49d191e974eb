"""Real DHCP clients (ISC dhclient, busybox udhcpc) against the server in network namespaces."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dhcp.netns import Segment, in_ns, segment, start_server, stop_server

pytestmark = pytest.mark.netns

SETTINGS = """
[dhcp]
mode = "full"
interfaces = ["vs"]
relay_agents = []
[[dhcp.subnet]]
cidr = "10.77.0.0/24"
pool = "10.77.0.100-10.77.0.199"
gateway = "10.77.0.1"
dns = ["10.77.0.53", "10.77.0.54"]
lease_time = 600
domain = "lab.test"
[http]
listen = "10.77.0.1:8080"
"""
CLIENT_MAC = "52:54:00:77:00:21"
MACHINES = [{"name": "r1-n21", "macs": [CLIENT_MAC], "ip": "10.77.0.21", "hostname": "r1-n21"}]

RECORD = """#!/bin/sh
# Record what the client was told; configure the address so unicast renewals work.
env | sort | sed 's/^/{reason} /' >> {out}
echo ---- >> {out}
"""


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[tuple[Segment, Path]]:
    with segment() as seg:
        seg.add_ns("s")
        seg.add_ns("c")
        seg.link("s", "vs", "c", "vc")
        seg.addr("s", "vs", "10.77.0.1/24")
        in_ns(seg.ns("c"), "ip", "link", "set", "vc", "address", CLIENT_MAC)
        yield seg, tmp_path


def db_row(db: Path, ip: str) -> tuple[str, str] | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("select mac, state from lease where ip = ?", (ip,)).fetchone()
    return None if row is None else (row[0], row[1])


def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_udhcpc_bound_renew_release(lan: tuple[Segment, Path]) -> None:
    seg, tmp = lan
    db = tmp / "leases.db"
    server = start_server(seg, "s", tmp, SETTINGS, MACHINES, "--db-url", f"sqlite+aiosqlite:///{db}")
    out = tmp / "udhcpc.log"
    script = tmp / "udhcpc.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1 ip=$ip router=$router dns=$dns lease=$lease hostname=$hostname domain=$domain" >> {out}\n'
        'if [ "$1" = bound ]; then ip addr add "$ip/$mask" dev "$interface"; fi\n'
    )
    script.chmod(0o755)
    client = seg.spawn(
        "c", ["busybox", "udhcpc", "-f", "-i", "vc", "-t", "5", "-T", "2", "-R", "-s", str(script)]
    )
    wait_for(lambda: out.exists() and "bound" in out.read_text())
    bound = next(line for line in out.read_text().splitlines() if line.startswith("bound"))
    assert "ip=10.77.0.21 " in bound
    assert "router=10.77.0.1 " in bound
    assert "dns=10.77.0.53 10.77.0.54 " in bound
    assert "lease=600 " in bound
    assert "hostname=r1-n21 " in bound
    assert "domain=lab.test" in bound
    assert db_row(db, "10.77.0.21") == (CLIENT_MAC, "bound")
    # Renew (SIGUSR1): a unicast REQUEST in RENEWING state, answered by ACK.
    client.send_signal(signal.SIGUSR1)
    wait_for(lambda: "renew ip=10.77.0.21" in out.read_text())
    # Exit with -R: RELEASE; the server records it.
    client.send_signal(signal.SIGTERM)
    client.wait(10)
    wait_for(lambda: db_row(db, "10.77.0.21") == (CLIENT_MAC, "released"))
    counters = stop_server(server)
    assert counters["ack"] >= 2
    assert counters["released"] == 1


def test_dhclient_bound_reboot_release(lan: tuple[Segment, Path]) -> None:
    seg, tmp = lan
    db = tmp / "leases.db"
    # A client not in the inventory: gets a pool address.
    in_ns(seg.ns("c"), "ip", "link", "set", "vc", "address", "02:00:00:00:00:42")
    server = start_server(seg, "s", tmp, SETTINGS, MACHINES, "--db-url", f"sqlite+aiosqlite:///{db}")
    out = tmp / "dhclient.log"
    script = tmp / "dhclient.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$reason ip=$new_ip_address routers=$new_routers dns=$new_domain_name_servers '
        f'lease=$new_dhcp_lease_time domain=$new_domain_name" >> {out}\n'
        'case "$reason" in BOUND|REBOOT) ip addr add "$new_ip_address/24" dev "$interface" ;; '
        'RELEASE) ip addr flush dev "$interface" ;; esac\n'
    )
    script.chmod(0o755)
    files = ["-sf", str(script), "-pf", str(tmp / "dhclient.pid"), "-lf", str(tmp / "dhclient.leases")]
    in_ns(seg.ns("c"), "dhclient", "-1", "-v", *files, "vc", timeout=40)
    text = out.read_text()
    bound = next(line for line in text.splitlines() if line.startswith("BOUND"))
    assert "ip=10.77.0.100 " in bound
    assert "routers=10.77.0.1 " in bound
    assert "dns=10.77.0.53 10.77.0.54 " in bound
    assert "lease=600 " in bound
    assert "domain=lab.test" in bound
    assert db_row(db, "10.77.0.100") == ("02:00:00:00:00:42", "bound")
    # Release (-r) sends DHCPRELEASE and stops the daemon.
    in_ns(seg.ns("c"), "dhclient", "-r", "-v", *files, "vc", timeout=30)
    wait_for(lambda: db_row(db, "10.77.0.100") == ("02:00:00:00:00:42", "released"))
    # Start again: the client gets the same address back.
    in_ns(seg.ns("c"), "dhclient", "-1", "-v", *files, "vc", timeout=40)
    last = [line for line in out.read_text().splitlines() if line.startswith(("BOUND", "REBOOT"))][-1]
    assert "ip=10.77.0.100 " in last
    in_ns(seg.ns("c"), "dhclient", "-x", *files, "vc", timeout=30, check=False)
    counters = stop_server(server)
    assert counters["ack"] >= 2


NO_POOL = "\n".join(line for line in SETTINGS.splitlines() if not line.startswith("pool"))
UUID_OPT = "00" + "21000000" + "0000" + "0040" + "8000525400770021"  # option 97: type 0, GUID (LE fields)
PXE = ["-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007", "-x", f"0x61:{UUID_OPT}"]
# Each boot stage as a real busybox udhcpc, shaped like the software that runs it.
STAGES = {
    "firmware PXE (no 61)": ["-C", *PXE],
    "iPXE (61 = 01+MAC)": [*PXE, "-x", "0x4d:69505845"],  # udhcpc's default 61 is 01+MAC
    "OS (61 = ff+IAID+DUID)": ["-x", "0x3d:ff0000000100030001525400770021", "-x", "hostname:r1-n21"],
}


@pytest.mark.parametrize("settings", [SETTINGS, NO_POOL], ids=["pool", "reservation-only"])
def test_udhcpc_boot_stages_keep_the_reservation(lan: tuple[Segment, Path], settings: str) -> None:
    """Issue 11: firmware -> iPXE -> OS -> reprovision -> firmware, real client, real socket."""
    seg, tmp = lan
    db = tmp / "leases.db"
    machines = [{**MACHINES[0], "uuid": "00000021-0000-4000-8000-525400770021"}]
    server = start_server(seg, "s", tmp, settings, machines, "--db-url", f"sqlite+aiosqlite:///{db}")
    out = tmp / "udhcpc.log"
    script = tmp / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && echo "bound ip=$ip" >> {out}\nexit 0\n')
    script.chmod(0o755)
    try:
        for step, stage in enumerate([*STAGES, "firmware PXE (no 61)", "iPXE (61 = 01+MAC)"], start=1):
            # -n -q: one lease and exit without RELEASE, so the previous stage's lease is
            # still bound when the next stage asks (as after a reboot).
            args = ["busybox", "udhcpc", "-n", "-q", "-f", "-i", "vc", "-t", "4", "-T", "1"]
            res = in_ns(seg.ns("c"), *args, "-s", str(script), *STAGES[stage], check=False, timeout=30)
            bound = out.read_text().splitlines() if out.exists() else []
            assert res.returncode == 0 and len(bound) == step, f"{stage}: no lease ({res.stderr[-500:]})"
            assert bound[-1] == "bound ip=10.77.0.21", f"{stage}: {bound[-1]}"
            assert db_row(db, "10.77.0.21") == (CLIENT_MAC, "bound")
    finally:
        counters = stop_server(server)
    assert counters["ack"] == 5
    assert counters.get("commit_conflict", 0) == 0
