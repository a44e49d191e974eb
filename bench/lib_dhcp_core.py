"""CPU per DORA of the DHCP sans-I/O core and per lease of the SQLite writer.

One process, no sockets, no network: 4,000 relayed DORAs (giaddr 10.88.0.2, as perfdhcp
sends them) through `DhcpServer`, best and median of 5 passes, then the same leases
written by `SqliteLeaseWriter` in batches of 100 (fsync included). Measures CPU time
(`time.process_time`), so it is less disturbed by a loaded machine than bench/dhcp.

Usage: .venv/bin/python bench/lib_dhcp_core.py [TREE]   (TREE: a checkout to measure,
e.g. a `git worktree` of an older commit; default this one). Needs scapy (tests' extra).
"""

# A measuring script: it imports after choosing the tree and calls the writer's
# synchronous body directly (no thread), so these rules do not fit it.
# ruff: noqa: E402, N812, PT018, SLF001

import asyncio
import ipaddress
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent))
import provisioner.dhcp.server as S
from provisioner.dhcp.book import Pool
from provisioner.dhcp.codec import parse
from provisioner.dhcp.config import ServerConfig, Subnet
from provisioner.dhcp.server import DhcpServer
from provisioner.matching import MachineIndex
from tests.dhcp.packets import client_packet

print("using", S.__file__)
N = 4000


def config():
    sub = Subnet(
        network=ipaddress.IPv4Network("10.88.0.0/16"),
        pool=Pool.from_range("10.88.1.0", "10.88.255.250"),
        gateway="10.88.0.1",
        dns=(),
        lease_time=3600,
        domain="",
    )
    return ServerConfig(
        server_ip="10.88.0.1",
        subnets=(sub,),
        relay_agents=frozenset({"10.88.0.2"}),
        http_base_url="http://10.88.0.1:8080",
        instance="",
        rate_per_s=1e9,
        rate_burst=1e9,
    )


macs = [f"02:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01" for i in range(N)]
disc = [client_packet("discover", m, xid=i, giaddr="10.88.0.2") for i, m in enumerate(macs)]


def run():
    idx = MachineIndex([])
    core = DhcpServer(config(), lambda: idx)
    addr = ("10.88.0.2", 67)
    now = 1.8e9
    offers = []
    t0 = time.process_time()
    for d in disc:
        core.receive_datagram(d, addr, now)
        offers += core.datagrams_to_send()
    t1 = time.process_time()
    reqs = [
        client_packet(
            "request",
            macs[i],
            xid=i,
            giaddr="10.88.0.2",
            requested=parse(o.data).yiaddr,
            server_id="10.88.0.1",
        )
        for i, o in enumerate(offers)
    ]
    leases = []
    t2 = time.process_time()
    for r in reqs:
        core.receive_datagram(r, addr, now)
        for p in core.commits_to_write():
            leases.append(p.lease)
            core.commit_done(p, ok=True)
        core.datagrams_to_send()
        while core.next_event() is not None:
            pass
    t3 = time.process_time()
    assert len(offers) == N and len(leases) == N, (len(offers), len(leases))
    return (t1 - t0) / N * 1e6, (t3 - t2) / N * 1e6, leases


res = [run() for _ in range(5)]
print(
    f"core us per DISCOVER->OFFER min {min(r[0] for r in res):.1f} med {statistics.median(r[0] for r in res):.1f}"
)
print(
    f"core us per REQUEST->ACK    min {min(r[1] for r in res):.1f} med {statistics.median(r[1] for r in res):.1f}"
)
leases = res[0][2]
from provisioner.dhcp.sqlite_writer import SqliteLeaseWriter


async def schema(path):
    from provisioner.store.db import create_schema, make_engine

    eng = make_engine(f"sqlite+aiosqlite:///{path}")
    await create_schema(eng)
    await eng.dispose()


ws = []
for _rep in range(3):
    d = tempfile.mkdtemp(prefix="perf-core-")
    path = f"{d}/l.db"
    asyncio.run(schema(path))
    w = SqliteLeaseWriter(path)
    t0 = time.process_time()
    for i in range(0, N, 100):
        won = w._commit_sync(leases[i : i + 100], 1.8e9)
        assert len(won) == len(leases[i : i + 100])
    ws.append((time.process_time() - t0) / N * 1e6)
print(f"sqlite writer us per lease (batches of 100) min {min(ws):.1f} med {statistics.median(ws):.1f}")
