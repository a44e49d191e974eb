"""IPv6 router advertisements for the lab bridge, as bytes (sans-I/O).

Theory of operation: iPXE waits ~13 s for IPv6 autoconfiguration unless a router
advertisement (RFC 4861 §4.2) arrives. The lab sends one with a Prefix Information option
(RFC 4861 §4.6.2) for a ULA /64 (RFC 4193), autonomous flag set, router lifetime 0 (RFC 4861
§6.2.3: we are not a default router; nothing leaves the namespace). The ICMPv6 checksum is
left zero: on a raw ICMPv6 socket the kernel fills it in (RFC 3542 §3.1).
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["ICMP6_ROUTER_ADVERT", "ICMP6_ROUTER_SOLICIT", "is_router_solicit", "router_advert"]

ICMP6_ROUTER_SOLICIT = 133  # RFC 4861 §4.1
ICMP6_ROUTER_ADVERT = 134  # RFC 4861 §4.2
_OPT_SOURCE_LLADDR = 1  # RFC 4861 §4.6.1
_OPT_PREFIX_INFO = 3  # RFC 4861 §4.6.2
_PREFIX_ON_LINK = 0x80
_PREFIX_AUTONOMOUS = 0x40


def router_advert(prefix: str, mac: str, valid_s: int = 86400, preferred_s: int = 14400) -> bytes:
    """Return an ICMPv6 Router Advertisement announcing ``prefix`` from link address ``mac``."""
    net = ipaddress.IPv6Network(prefix)
    # RFC 4861 §4.2: type, code, checksum, cur hop limit, flags (M=O=0), router lifetime 0,
    # reachable time 0, retrans timer 0 (0 = unspecified).
    header = struct.pack("!BBHBBHII", ICMP6_ROUTER_ADVERT, 0, 0, 64, 0, 0, 0, 0)
    lladdr = bytes.fromhex(mac.replace(":", ""))
    source = struct.pack("!BB", _OPT_SOURCE_LLADDR, 1) + lladdr
    prefix_opt = (
        struct.pack(
            "!BBBBIII",
            _OPT_PREFIX_INFO,
            4,  # length in units of 8 octets
            net.prefixlen,
            _PREFIX_ON_LINK | _PREFIX_AUTONOMOUS,
            valid_s,
            preferred_s,
            0,
        )
        + net.network_address.packed
    )
    return header + source + prefix_opt


def is_router_solicit(packet: bytes) -> bool:
    """Tell whether a received ICMPv6 message (no IPv6 header) is a Router Solicitation."""
    return len(packet) >= 8 and packet[0] == ICMP6_ROUTER_SOLICIT and packet[1] == 0
