"""In-memory harness: a DhcpServer core plus a synchronous fake commit (no sockets)."""

from __future__ import annotations

import ipaddress

from provisioner.dhcp.book import Pool
from provisioner.dhcp.config import ServerConfig, Subnet
from provisioner.dhcp.replies import Outgoing
from provisioner.dhcp.server import DhcpServer
from provisioner.matching import MachineIndex
from provisioner.model import MachineSummary

SERVER = "10.77.0.1"
NOW = 1_800_000_000.0

MACHINES = [
    MachineSummary(
        name="r1-n1",
        macs=("52:54:00:77:00:11",),
        ip="10.77.0.11",
        hostname="r1-n1",
        uuid="00000000-0000-4000-8000-525400770011",
    ),
    MachineSummary(name="r1-n2", macs=("52:54:00:77:00:12",), ip="10.77.0.12", pxe_allowed=False),
    MachineSummary(name="r1-n3", macs=("52:54:00:77:00:13",), uuid="00000000-0000-4000-8000-525400770013"),
    MachineSummary(name="r2-n1", macs=("52:54:00:78:00:11",), ip="10.78.0.11"),
]


def subnet(
    cidr: str = "10.77.0.0/24",
    pool: tuple[str, str] | None = ("10.77.0.100", "10.77.0.109"),
    gateway: str = "10.77.0.1",
) -> Subnet:
    """A subnet with a small pool."""
    return Subnet(
        network=ipaddress.IPv4Network(cidr),
        pool=Pool.from_range(*pool) if pool else None,
        gateway=gateway,
        dns=("10.77.0.1", "10.77.0.2"),
        lease_time=600,
        domain="lab.example",
    )


def make_config(**kw: object) -> ServerConfig:
    """Two subnets (the local one and a relayed one), a relay at 10.78.0.1."""
    base: dict[str, object] = {
        "server_ip": SERVER,
        "subnets": (subnet(), subnet("10.78.0.0/24", ("10.78.0.100", "10.78.0.200"), "10.78.0.1")),
        "relay_agents": frozenset({"10.78.0.1"}),
        "http_base_url": "http://10.77.0.1:8080",
        "instance": "a",
    }
    base.update(kw)
    return ServerConfig(**base)  # type: ignore[arg-type]


class Harness:
    """Feeds datagrams to a core and commits its lease writes at once."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        machines: list[MachineSummary] | None = None,
        *,
        commit_ok: bool = True,
    ) -> None:
        self.index = MachineIndex(MACHINES if machines is None else machines)
        self.core = DhcpServer(config or make_config(), lambda: self.index)
        self.commit_ok = commit_ok
        self.committed: list[object] = []
        self.events: list[object] = []

    def send(
        self,
        data: bytes,
        addr: tuple[str, int] = ("0.0.0.0", 68),
        now: float = NOW,
        *,
        proxy_port: bool = False,
    ) -> list[Outgoing]:
        """One datagram in, every resulting datagram out (after the commits)."""
        self.core.receive_datagram(data, addr, now, proxy_port=proxy_port)
        out = self.core.datagrams_to_send()
        for pending in self.core.commits_to_write():
            self.committed.append(pending.lease)
            self.core.commit_done(pending, ok=self.commit_ok)
        out += self.core.datagrams_to_send()
        while (event := self.core.next_event()) is not None:
            self.events.append(event)
        return out
