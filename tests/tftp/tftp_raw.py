"""A raw asyncio UDP client for TFTP tests: exact bytes out, every datagram in."""

from __future__ import annotations

import asyncio
import socket
from typing import Self

from provisioner.tftp.codec import Data, Opcode, build_ack, build_request, parse_packet

Address = tuple[str, int]


class RawUdp:
    """One non-blocking UDP socket on 127.0.0.1 driven through the running loop."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes, addr: Address) -> None:
        self.sock.sendto(data, addr)

    async def recv(self, wait: float = 1.0) -> tuple[bytes, Address] | None:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.sock_recvfrom(self.sock, 70000), wait)
        except TimeoutError:
            return None

    async def drain(self, quiet: float) -> list[tuple[bytes, Address]]:
        """Everything that arrives until `quiet` seconds pass without a datagram."""
        got = []
        while (item := await self.recv(quiet)) is not None:
            got.append(item)
        return got


async def download(
    port: int,
    name: str,
    options: tuple[tuple[str, str], ...] = (),
    *,
    mode: str = "octet",
) -> bytes:
    """A strict lockstep RFC 1350 download (the survival check); raises on any error."""
    async with RawUdp() as udp:
        udp.send(build_request(Opcode.RRQ, name, mode, options), ("127.0.0.1", port))
        out = bytearray()
        block_size = 512
        expected = 1
        while True:
            item = await udp.recv(2.0)
            if item is None:
                msg = "server went silent"
                raise AssertionError(msg)
            data, tid = item
            packet = parse_packet(data)
            if not isinstance(packet, Data):
                if packet.__class__.__name__ == "OAck":
                    block_size = int(dict(packet.options).get("blksize", "512"))  # type: ignore[union-attr]
                    udp.send(build_ack(0), tid)
                    continue
                msg = f"unexpected {packet!r}"
                raise AssertionError(msg)
            if packet.block == expected & 0xFFFF:
                out += packet.payload
                expected += 1
            udp.send(build_ack(packet.block), tid)
            if len(packet.payload) < block_size and packet.block == (expected - 1) & 0xFFFF:
                return bytes(out)
