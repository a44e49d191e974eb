"""docs/threats.md A13 probe (run as its own process so RSS is ours): prints JSON measurements."""

from __future__ import annotations

import ipaddress
import json
import random
import sys
import tracemalloc

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.packet import raw

from provisioner.dhcp.book import Lease, LeaseBook, Pool
from provisioner.dhcp.config import ServerConfig, Subnet
from provisioner.dhcp.server import DhcpServer
from provisioner.matching import MachineIndex

NOW = 1_800_000_000.0


def rss_mib() -> float:
    with open("/proc/self/status") as fh:  # noqa: PTH123
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    subnet = Subnet(
        ipaddress.IPv4Network("10.76.0.0/14"),
        Pool.from_range("10.76.0.1", "10.79.255.250"),
        "10.77.0.1",
        ("10.77.0.1",),
        3600,
        "",
    )
    # Smaller caps than production so that the warm-up reaches them; then nothing may grow.
    config = ServerConfig(
        server_ip="10.77.0.1", subnets=(subnet,), rate_per_s=1e9, rate_burst=1e9, max_tracked_clients=8_000
    )
    index = MachineIndex([])
    core = DhcpServer(config, lambda: index, LeaseBook(max_offers=5_000))
    for i in range(60_000):
        core.book.put(
            Lease(
                ip=f"10.76.{i // 250}.{i % 250 + 1}",
                mac=f"02:01:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                expires_at=NOW + 3600,
            )
        )
    same = raw(
        BOOTP(chaddr=bytes.fromhex("020100000001"), ciaddr="10.76.0.2", xid=1)
        / DHCP(options=[("message-type", "request"), "end"])
    )
    template = raw(
        BOOTP(chaddr=bytes.fromhex("02aa00000000"), xid=2)
        / DHCP(options=[("message-type", "discover"), "end"])
    )
    rng = random.Random(13)

    def drain() -> None:
        core.datagrams_to_send()
        for pending in core.commits_to_write():
            core.commit_done(pending, ok=True)
        core.datagrams_to_send()
        while core.next_event() is not None:
            pass

    def run(n: int, now: float) -> float:
        for k in range(n):
            core.receive_datagram(same, ("10.76.0.2", 68), now + k * 1e-4)
            drain()
            mac = bytes([2, 0xAA, *rng.randbytes(4)])
            core.receive_datagram(template[:28] + mac + template[34:], ("0.0.0.0", 68), now + k * 1e-4)
            drain()
        return now + n * 1e-4

    now = run(10_000, NOW)  # warm up: tables reach their caps (2 requests per step)
    tracemalloc.start()
    rss_before = rss_mib()
    base, _ = tracemalloc.get_traced_memory()
    now = run(50_000, now)  # 100,000 requests: 50,000 identical renewals + 50,000 random DISCOVERs
    current, _ = tracemalloc.get_traced_memory()
    sys.stdout.write(
        json.dumps(
            {
                "rss_before": rss_before,
                "rss_after": rss_mib(),
                "leases": len(core.book),
                "traced_growth": current - base,
                "offers": core.book.offers_held,
                "answered": core.counters["answered"],
                "acks": core.counters["ack"],
            }
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
