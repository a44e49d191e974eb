"""The DHCP core's configuration, built from `DhcpSettings` (pure, frozen, no I/O)."""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Literal

from provisioner.dhcp.book import Pool, ip_to_int
from provisioner.dhcp.pxe import BootFiles
from provisioner.settings import DhcpSettings, SubnetSettings

__all__ = ["ServerConfig", "Subnet", "config_from_settings"]

DEFAULT_CLIENT_PORT = 68  # RFC 2131 §4.1
DEFAULT_RELAY_PORT = 67  # RFC 2131 §4.1: replies to a relay go to its server port
DEFAULT_DECLINE_QUARANTINE_S = 600.0
DEFAULT_RATE_PER_S = 10.0
DEFAULT_RATE_BURST = 20.0
DEFAULT_MAX_TRACKED_CLIENTS = 65_536


@dataclass(frozen=True, slots=True)
class Subnet:
    """One subnet we are authoritative for; `pool` is None when it has reservations only."""

    network: ipaddress.IPv4Network
    pool: Pool | None
    gateway: str | None
    dns: tuple[str, ...]
    lease_time: int
    domain: str
    # The network as ints, computed once: `contains` runs for every relayed packet (hot path).
    _mask: int = field(init=False, repr=False, compare=False, default=0)
    _net: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_mask", int(self.network.netmask))
        object.__setattr__(self, "_net", int(self.network.network_address))

    def contains(self, ip: str) -> bool:
        """True when `ip` is inside this subnet."""
        try:
            value = ip_to_int(ip)
        except ValueError:
            return False
        return value & self._mask == self._net

    def in_pool(self, ip: str) -> bool:
        """True when `ip` is in the dynamic range."""
        if self.pool is None:
            return False
        try:
            value = ip_to_int(ip)
        except ValueError:
            return False
        return self.pool.first <= value <= self.pool.last


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything one DHCP core needs; see `config_from_settings`."""

    server_ip: str
    mode: Literal["full", "proxy"] = "full"
    subnets: tuple[Subnet, ...] = ()
    relay_agents: frozenset[str] = frozenset()
    unknown_machines: Literal["ignore", "record", "discovery"] = "record"
    http_base_url: str = "http://127.0.0.1:8080"
    boot_files: BootFiles = field(default_factory=BootFiles)
    client_port: int = DEFAULT_CLIENT_PORT
    relay_port: int = DEFAULT_RELAY_PORT
    broadcast_address: str = "255.255.255.255"
    decline_quarantine_s: float = DEFAULT_DECLINE_QUARANTINE_S
    rate_per_s: float = DEFAULT_RATE_PER_S
    rate_burst: float = DEFAULT_RATE_BURST
    max_tracked_clients: int = DEFAULT_MAX_TRACKED_CLIENTS
    instance: str = ""

    def subnet_for(self, ip: str) -> Subnet | None:
        """The configured subnet holding `ip`."""
        for subnet in self.subnets:
            if subnet.contains(ip):
                return subnet
        return None


def _subnet(settings: SubnetSettings, instance: str) -> Subnet:
    pool = None
    if settings.pool:
        first, last = settings.pool_range
        # Instances sharing one database start allocating at different places, so their
        # offers rarely collide; the unique(ip) constraint settles the rest.
        offset = zlib.crc32(instance.encode()) if instance else 0
        pool = Pool.from_range(str(first), str(last), offset)
    return Subnet(
        network=settings.cidr,
        pool=pool,
        gateway=str(settings.gateway) if settings.gateway else None,
        dns=tuple(str(d) for d in settings.dns),
        lease_time=settings.lease_time,
        domain=settings.domain,
    )


def config_from_settings(
    settings: DhcpSettings,
    *,
    server_ip: str,
    http_base_url: str,
    instance: str = "",
    client_port: int = DEFAULT_CLIENT_PORT,
    relay_port: int = DEFAULT_RELAY_PORT,
    broadcast_address: str = "255.255.255.255",
    boot_files: BootFiles | None = None,
) -> ServerConfig:
    """Translate settings into a core configuration (`mode = "off"` is the caller's job)."""
    return ServerConfig(
        server_ip=server_ip,
        mode="proxy" if settings.mode == "proxy" else "full",
        subnets=tuple(_subnet(s, instance) for s in settings.subnet),
        relay_agents=frozenset(str(a) for a in settings.relay_agents),
        unknown_machines=settings.unknown_machines,
        http_base_url=http_base_url,
        boot_files=boot_files or BootFiles(),
        client_port=client_port,
        relay_port=relay_port,
        broadcast_address=broadcast_address,
        instance=instance,
    )
