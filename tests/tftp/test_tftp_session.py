"""Session send backlog: a full socket buffer queues datagrams until the socket is writable."""

from __future__ import annotations

import asyncio
import collections
import socket

from provisioner.tftp.codec import Data, build_ack, parse_packet
from provisioner.tftp.files import OpenedFile
from provisioner.tftp.session import Session

from .tftp_pair import make_transfer


class StallingSocket:
    """A real connected UDP socket whose send() reports EAGAIN after `budget` datagrams."""

    def __init__(self, real: socket.socket, budget: int) -> None:
        self.real = real
        self.budget = budget

    def fileno(self) -> int:
        return self.real.fileno()

    def send(self, data: bytes) -> int:
        if self.budget <= 0:
            raise BlockingIOError
        self.budget -= 1
        return self.real.send(data)

    def recv(self, size: int) -> bytes:
        return self.real.recv(size)

    def close(self) -> None:
        self.real.close()


async def test_backlog_is_sent_when_writable():
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    real.bind(("127.0.0.1", 0))
    real.connect(client.getsockname())
    real.setblocking(False)
    stalling = StallingSocket(real, budget=0)
    content = bytes(range(256)) * 40  # 10240 bytes: 20 blocks of 512
    machine = make_transfer(content, (("windowsize", "8"),), now=loop.time())
    counters: collections.Counter[str] = collections.Counter()
    ended = []
    session = Session(
        loop,
        client.getsockname(),
        machine=machine,
        file=OpenedFile("f", content, len(content), "disk"),
        sock=stalling,  # type: ignore[arg-type]
        listener=real,
        counters=counters,
        on_end=lambda _session, event: ended.append(event),
    )
    session.start()  # the OACK hits the stalled socket and waits in the backlog
    assert counters["send_backlog"] == 1
    stalling.budget = 100
    oack, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 2)
    assert oack.startswith(b"\x00\x06")
    client.sendto(build_ack(0), real.getsockname())
    blocks = []
    for _ in range(8):
        raw, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 2)
        packet = parse_packet(raw)
        assert isinstance(packet, Data)
        blocks.append(packet.block)
    assert blocks == list(range(1, 9))
    assert counters["datagrams_sent"] == 9
    session.close()
    session.close()
    assert session.ended
    client.close()
