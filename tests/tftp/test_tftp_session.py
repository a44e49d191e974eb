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
    assert session.datagrams_sent == 9  # kept in the session while it runs...
    assert counters["datagrams_sent"] == 0
    session.close()
    session.close()
    assert session.ended
    assert counters["datagrams_sent"] == 9  # ...and folded into the counters once, at close
    assert session.datagrams_sent == 0
    client.close()


async def test_lockstep_send_hitting_eagain_goes_to_the_backlog():
    """The inline single-datagram send falls back to the backlog on EAGAIN, counted once."""
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    real.bind(("127.0.0.1", 0))
    real.connect(client.getsockname())
    real.setblocking(False)
    stalling = StallingSocket(real, budget=1)  # the OACK goes out, DATA 1 hits EAGAIN
    content = bytes(range(256)) * 4  # 1024 bytes: 2 blocks of 512 and an empty third
    machine = make_transfer(content, (("tsize", "0"),), now=loop.time())
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
    session.start()
    oack, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 2)
    assert oack.startswith(b"\x00\x06")
    assert session.datagrams_sent == 1
    client.sendto(build_ack(0), real.getsockname())
    for _ in range(100):  # the ACK arrives through the loop's reader on the transfer socket
        if counters["send_backlog"]:
            break
        await asyncio.sleep(0.01)
    assert counters["send_backlog"] == 1
    assert session.received == 1
    assert session.datagrams_sent == 1  # the failed inline send is not counted
    stalling.budget = 100
    raw, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 2)
    packet = parse_packet(raw)
    assert isinstance(packet, Data)
    assert packet.block == 1
    assert packet.payload == content[:512]
    assert session.datagrams_sent == 2
    for block in (1, 2):
        client.sendto(build_ack(block), real.getsockname())
        raw, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 2)
        assert raw[:4] == bytes([0, 3, 0, block + 1])
    client.sendto(build_ack(3), real.getsockname())
    for _ in range(100):
        if ended:
            break
        await asyncio.sleep(0.01)
    assert len(ended) == 1
    assert session.ended
    assert counters["datagrams_sent"] == 4  # OACK + DATA 1..3, folded in at close
    assert counters["received"] == 4  # ACK 0..3
    client.close()
