"""The storm's client side of the wire: a DHCP client codec (RFC 2131/2132) and a TFTP client.

Small and struct-based on purpose: thousands of simulated machines share one process, and
the client must cost far less than the server it measures (docs/benchmarks.md: a scapy
codec is ~70x slower than struct).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import uuid as uuid_mod
from dataclasses import dataclass

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6
_HDR = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


@dataclass(frozen=True)
class Reply:
    """What a client needs from an OFFER/ACK."""

    xid: int
    mtype: int
    yiaddr: str
    siaddr: str
    server_id: str
    bootfile: str


def build(
    mtype: int,
    *,
    xid: int,
    mac: bytes,
    uuid: str,
    giaddr: str = "0.0.0.0",
    requested: str | None = None,
    server_id: str | None = None,
    ipxe: bool = False,
    broadcast: bool = False,
) -> bytes:
    """A client message as PXE firmware (or iPXE, with user class 77 'iPXE') sends it."""
    hops = 1 if giaddr != "0.0.0.0" else 0
    head = _HDR.pack(
        1, 1, 6, hops, xid, 0, 0x8000 if broadcast else 0,
        bytes(4), bytes(4), bytes(4), socket.inet_aton(giaddr),
        mac.ljust(16, b"\0"), bytes(64), bytes(128),
    )  # fmt: skip
    opts = bytearray([53, 1, mtype])
    opts += bytes([93, 2, 0, 0])  # RFC 4578: arch 0, x86 BIOS
    vendor = b"PXEClient:Arch:00000:UNDI:002001"
    opts += bytes([60, len(vendor)]) + vendor
    opts += bytes([97, 17, 0]) + uuid_mod.UUID(uuid).bytes_le
    if ipxe:
        opts += bytes([77, 4]) + b"iPXE"
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server_id:
        opts += bytes([54, 4]) + socket.inet_aton(server_id)
    opts += bytes([55, 4, 1, 3, 6, 67, 255])
    return head + MAGIC + bytes(opts)


def parse(data: bytes) -> Reply | None:
    """An OFFER/ACK/NAK, or None for anything else (short, not a reply, no type)."""
    if len(data) < _HDR.size + 4 or data[0] != 2 or data[_HDR.size : _HDR.size + 4] != MAGIC:
        return None
    f = _HDR.unpack_from(data)
    opts: dict[int, bytes] = {}
    i = _HDR.size + 4
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        code, size = data[i], data[i + 1]
        opts[code] = data[i + 2 : i + 2 + size]
        i += 2 + size
    if 53 not in opts:
        return None
    bootfile = opts.get(67, f[13].rstrip(b"\0")).rstrip(b"\0").decode(errors="replace")
    sid = opts.get(54, b"")
    return Reply(
        xid=f[4],
        mtype=opts[53][0],
        yiaddr=socket.inet_ntoa(f[8]),
        siaddr=socket.inet_ntoa(f[9]),
        server_id=socket.inet_ntoa(sid) if len(sid) == 4 else "",
        bootfile=bootfile,
    )


class DhcpPort(asyncio.DatagramProtocol):
    """One UDP socket shared by many clients; replies go to the waiter of their xid."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiters: dict[int, asyncio.Queue[Reply]] = {}
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        _ = addr
        reply = parse(data)
        queue = self.waiters.get(reply.xid) if reply else None
        if reply is None or queue is None:
            self.dropped += 1
            return
        queue.put_nowait(reply)


async def dora(
    port: DhcpPort, target: tuple[str, int], *, xid: int, mac: bytes, uuid: str, giaddr: str,
    ipxe: bool, broadcast: bool, timeout: float = 4.0, tries: int = 4,
) -> Reply:  # fmt: skip
    """DISCOVER, OFFER, REQUEST, ACK; retransmits like firmware (RFC 2131 4.1)."""
    queue: asyncio.Queue[Reply] = asyncio.Queue()
    port.waiters[xid] = queue
    kw = {"xid": xid, "mac": mac, "uuid": uuid, "giaddr": giaddr, "ipxe": ipxe, "broadcast": broadcast}
    assert port.transport is not None
    try:
        for _ in range(tries):
            port.transport.sendto(build(DISCOVER, **kw), target)  # type: ignore[arg-type]
            try:
                offer = await _wait(queue, OFFER, timeout)
                request = build(REQUEST, requested=offer.yiaddr, server_id=offer.server_id, **kw)  # type: ignore[arg-type]
                port.transport.sendto(request, target)
                ack = await _wait(queue, ACK, timeout)
            except TimeoutError:
                continue
            return ack
        msg = "no DHCP ACK"
        raise TimeoutError(msg)
    finally:
        del port.waiters[xid]


async def _wait(queue: asyncio.Queue[Reply], mtype: int, timeout: float) -> Reply:
    async with asyncio.timeout(timeout):
        while True:
            reply = await queue.get()
            if reply.mtype == NAK:
                msg = "DHCP NAK"
                raise RuntimeError(msg)
            if reply.mtype == mtype:
                return reply


class _Tftp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))


async def tftp_get(local: str, server: str, name: str, *, blksize: int = 1468, timeout: float = 2.0) -> int:
    """Fetch NAME by TFTP (RFC 1350, blksize RFC 2348, lockstep); return its size."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Tftp, local_addr=(local, 0))
    rrq = b"\0\1" + name.encode() + b"\0octet\0blksize\0" + str(blksize).encode() + b"\0tsize\0" + b"0\0"
    try:
        last: tuple[bytes, tuple[str, int]] = (rrq, (server, 69))
        transport.sendto(*last)
        size, expect, peer, tries = 0, 1, None, 0
        while True:
            try:
                async with asyncio.timeout(timeout):
                    data, addr = await proto.queue.get()
            except TimeoutError:
                tries += 1
                if tries > 5:
                    raise
                transport.sendto(*last)
                continue
            tries = 0
            if peer is None:
                peer = addr
            op = struct.unpack_from("!H", data)[0]
            if op == 6:  # OACK: take the options, ACK block 0
                last = (b"\0\4\0\0", peer)
                transport.sendto(*last)
                continue
            if op == 5:
                msg = f"TFTP error {data[4:-1].decode(errors='replace')}"
                raise RuntimeError(msg)
            block = struct.unpack_from("!H", data, 2)[0]
            if block == (expect & 0xFFFF):
                size += len(data) - 4
                expect += 1
            last = (b"\0\4" + data[2:4], peer)
            transport.sendto(*last)
            if block == ((expect - 1) & 0xFFFF) and len(data) - 4 < blksize:
                return size
    finally:
        transport.close()


def machine_address(index: int) -> str:
    """Machine i's address: 10.88.1.0 upwards (10.88.0.0/24 is the servers' and relay's)."""
    return str(ipaddress.ip_address("10.88.1.10") + index)
