"""Reply construction: which options go in an OFFER/ACK/NAK and where it is sent.

Pure helpers for `server.py`. Replies are built only from server state and the parsed
fields we chose to echo (docs/threats.md A8): xid, flags, giaddr, chaddr, option 82 from a trusted
relay (RFC 3046 §2.2), option 97 (PXE spec / RFC 4578 §2.3) and option 61 (RFC 6842 §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.dhcp.codec import BOOTREPLY, DhcpPacket, build, ip_to_bytes
from provisioner.dhcp.config import ServerConfig, Subnet
from provisioner.dhcp.options import MessageType, Opt
from provisioner.dhcp.pxe import BootDecision

__all__ = ["Outgoing", "ReplySpec", "build_reply", "destination", "proxy_reply"]

_ZERO = "0.0.0.0"
# PXE spec 2.1 §2.4 option 43 sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: "download the
# boot file named in the DHCP packet", i.e. skip the boot-server discovery dance.
_PXE_VENDOR_OPTIONS = b"\x06\x01\x08\xff"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One datagram to send: payload and destination."""

    data: bytes
    addr: tuple[str, int]


@dataclass(frozen=True, slots=True)
class ReplySpec:
    """What a reply says; `yiaddr` and `subnet` are None for proxy and INFORM answers."""

    message_type: MessageType
    yiaddr: str = _ZERO
    subnet: Subnet | None = None
    lease_time: int | None = None
    hostname: str | None = None
    boot: BootDecision | None = None
    message: str = ""


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


_SERVER_IDS: dict[str, bytes] = {}


def _server_id(ip: str) -> bytes:
    cached = _SERVER_IDS.get(ip)
    if cached is None:
        cached = _SERVER_IDS[ip] = ip_to_bytes(ip)
    return cached


_SUBNET_OPTIONS: dict[int, tuple[Subnet, list[tuple[int, bytes]]]] = {}


def _subnet_options(subnet: Subnet) -> list[tuple[int, bytes]]:
    # Subnets live as long as the process: encode their options once (hot path).
    cached = _SUBNET_OPTIONS.get(id(subnet))
    if cached is not None and cached[0] is subnet:
        return cached[1]
    opts = _encode_subnet_options(subnet)
    _SUBNET_OPTIONS[id(subnet)] = (subnet, opts)
    return opts


def _encode_subnet_options(subnet: Subnet) -> list[tuple[int, bytes]]:
    opts: list[tuple[int, bytes]] = [(Opt.SUBNET_MASK, subnet.network.netmask.packed)]
    if subnet.gateway:
        opts.append((Opt.ROUTER, ip_to_bytes(subnet.gateway)))
    if subnet.dns:
        opts.append((Opt.DNS, b"".join(ip_to_bytes(d) for d in subnet.dns)))
    if subnet.domain:
        opts.append((Opt.DOMAIN, subnet.domain.encode("ascii", "replace")))
    opts.append((Opt.BROADCAST, subnet.network.broadcast_address.packed))
    return opts


def build_reply(config: ServerConfig, request: DhcpPacket, spec: ReplySpec) -> bytes:
    """Encode the reply to `request` described by `spec`."""
    opts: list[tuple[int, bytes]] = [
        (Opt.MESSAGE_TYPE, bytes((spec.message_type,))),
        (Opt.SERVER_ID, _server_id(config.server_ip)),
    ]
    siaddr = _ZERO
    file = b""
    if spec.message_type == MessageType.NAK:
        # RFC 2131 §4.3.2 table 3: a NAK carries no configuration, only a message.
        if spec.message:
            opts.append((Opt.MESSAGE, spec.message.encode("ascii", "replace")))
    else:
        if spec.lease_time is not None:
            opts.append((Opt.LEASE_TIME, _u32(spec.lease_time)))
            # RFC 2131 §4.4.5: T1 = 0.5 and T2 = 0.875 of the lease by default.
            opts.append((Opt.RENEWAL_T1, _u32(spec.lease_time // 2)))
            opts.append((Opt.REBINDING_T2, _u32(spec.lease_time * 7 // 8)))
        if spec.subnet is not None:
            opts.extend(_subnet_options(spec.subnet))
        if spec.hostname:
            opts.append((Opt.HOSTNAME, spec.hostname.encode("ascii", "replace")[:63]))
        if spec.boot is not None:
            file = spec.boot.filename.encode()
            opts.append((Opt.VENDOR_CLASS, spec.boot.vendor_class))
            # siaddr (next-server) is set for HTTP boot URLs too: iPXE counts an answer as
            # carrying PXE boot information only with both siaddr and a boot file; without
            # siaddr it ignores a proxyDHCP answer altogether ("Nothing to boot", seen
            # with QEMU's iPXE beside dnsmasq) and, in full mode, first spends seconds on
            # a ProxyDHCPREQUEST to port 4011 (iPXE src/net/udp/dhcp.c, dhcp_has_pxeopts).
            siaddr = config.server_ip
            if spec.boot.via_tftp:
                opts.append((Opt.TFTP_SERVER, config.server_ip.encode()))
                opts.append((Opt.VENDOR_SPECIFIC, _PXE_VENDOR_OPTIONS))
            opts.append((Opt.BOOTFILE, file))
            uuid = request.options.get(Opt.CLIENT_UUID)
            if uuid is not None and len(uuid) == 17:
                opts.append((Opt.CLIENT_UUID, uuid))
    client_id = request.client_id
    if client_id is not None:
        opts.append((Opt.CLIENT_ID, client_id))  # RFC 6842 §3
    if request.giaddr != _ZERO and request.relay_info is not None:
        opts.append((Opt.RELAY_AGENT_INFO, request.relay_info))  # RFC 3046 §2.2: last
    reply = DhcpPacket(
        op=BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags,
        ciaddr=request.ciaddr if spec.message_type != MessageType.NAK else _ZERO,
        yiaddr=spec.yiaddr,
        siaddr=siaddr,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        file=file if len(file) < 128 else b"",
    )
    return build(reply, request.max_message_size, opts)


def destination(config: ServerConfig, request: DhcpPacket, message_type: MessageType) -> tuple[str, int]:
    """Where a reply goes (RFC 2131 §4.1, "server transmits")."""
    if request.giaddr != _ZERO:
        return (request.giaddr, config.relay_port)
    if message_type != MessageType.NAK and request.ciaddr != _ZERO:
        return (request.ciaddr, config.client_port)
    # No address yet: broadcast. (Unicasting to yiaddr needs an ARP entry we cannot set
    # from a UDP socket; RFC 2131 §4.1 allows broadcast in all these cases.)
    return (config.broadcast_address, config.client_port)


def proxy_reply(
    config: ServerConfig,
    request: DhcpPacket,
    message_type: MessageType,
    boot: BootDecision | None,
    addr: tuple[str, int],
    *,
    proxy_port: bool,
) -> Outgoing | None:
    """The proxyDHCP answer (PXE spec 2.1 §2.2), or None: never an address, PXE clients only."""
    if boot is None:
        return None
    if proxy_port and message_type == MessageType.REQUEST:
        # PXE spec 2.1 §2.2.7: the boot server answers the client where it asked from:
        # the datagram's source, never `ciaddr` (a forged ciaddr would make us reflect
        # the ACK to any address; issue 14). No source address: nowhere to answer.
        if addr[0] == _ZERO:
            return None
        data = build_reply(config, request, ReplySpec(MessageType.ACK, boot=boot))
        return Outgoing(data, addr)
    if not proxy_port and message_type == MessageType.DISCOVER:
        # PXE spec 2.1 §2.2.4: a proxy OFFER has yiaddr 0 and option 60 PXEClient.
        data = build_reply(config, request, ReplySpec(MessageType.OFFER, boot=boot))
        return Outgoing(data, destination(config, request, MessageType.OFFER))
    return None
