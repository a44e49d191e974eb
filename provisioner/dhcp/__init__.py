"""DHCPv4: sans-I/O codec and server core, PXE decisions, lease storage, asyncio service."""

from provisioner.dhcp.codec import DhcpPacket, LocalProtocolError, RemoteProtocolError, build, parse
from provisioner.dhcp.limits import DiscoveredMachine
from provisioner.dhcp.pxe import BootDecision, Firmware, decide
from provisioner.dhcp.server import DhcpServer
from provisioner.dhcp.service import DhcpService

__all__ = [
    "BootDecision",
    "DhcpPacket",
    "DhcpServer",
    "DhcpService",
    "DiscoveredMachine",
    "Firmware",
    "LocalProtocolError",
    "RemoteProtocolError",
    "build",
    "decide",
    "parse",
]
