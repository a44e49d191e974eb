"""In-memory TFTP pair: our ReadTransfer against a minimal test receiver, over a faulty wire.

`MemoryClient` is an RFC 1350 / RFC 7440 receiver: it ACKs every block in lockstep, or
the last block of each window, or (on a gap) the last block it has in order. `Wire`
loses, duplicates and reorders datagrams from a seeded RNG. `roundtrip_until_done`
drives both with a virtual clock that jumps to the server's deadline when nothing is in
flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from provisioner.tftp.codec import Data, OAck, Opcode, build_ack, build_request, parse_packet
from provisioner.tftp.options import negotiate
from provisioner.tftp.transfer import ReadTransfer, State

if TYPE_CHECKING:
    import random


@dataclass
class MemoryClient:
    """A receiver that reassembles the file from DATA packets."""

    window: int = 1
    block_size: int = 512
    received: bytearray = field(default_factory=bytearray)
    expected: int = 1  # absolute number of the next block we want
    done: bool = False
    oack: dict[str, str] | None = None
    acks_sent: int = 0
    since_ack: int = 0

    def receive(self, datagram: bytes) -> list[bytes]:
        packet = parse_packet(datagram)
        if isinstance(packet, OAck):
            self.oack = dict(packet.options)
            self.block_size = int(self.oack.get("blksize", self.block_size))
            self.window = int(self.oack.get("windowsize", 1))
            return [self._ack(0)]
        assert isinstance(packet, Data), packet
        if self.done:
            # Our final ACK was lost: the server resent the last block; ACK it again.
            return [self._ack(self.expected - 1)]
        if packet.block == self.expected & 0xFFFF:
            self.received += packet.payload
            self.expected += 1
            self.since_ack += 1
            if len(packet.payload) < self.block_size:
                self.done = True
                return [self._ack(self.expected - 1)]
            if self.since_ack >= self.window:
                return [self._ack(self.expected - 1)]
            return []
        # Out of order or duplicate: tell the sender where we are (RFC 7440 §4; in
        # lockstep this re-ACKs the previous block, which RFC 1350 clients also do).
        return [self._ack(self.expected - 1)]

    def _ack(self, absolute: int) -> bytes:
        self.acks_sent += 1
        self.since_ack = 0
        return build_ack(absolute)


@dataclass
class Wire:
    """A one-way channel that drops, duplicates and reorders datagrams."""

    rng: random.Random
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    queue: list[bytes] = field(default_factory=list)
    carried: int = 0

    def put(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            self.carried += 1
            if self.rng.random() < self.drop:
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            for _ in range(copies):
                if self.queue and self.rng.random() < self.reorder:
                    self.queue.insert(self.rng.randrange(len(self.queue)), datagram)
                else:
                    self.queue.append(datagram)

    def take(self) -> list[bytes]:
        out, self.queue = self.queue, []
        return out


def make_transfer(
    content: bytes,
    options: tuple[tuple[str, str], ...] = (),
    *,
    max_block_size: int = 65464,
    max_window_size: int = 64,
    retries: int = 6,
    timeout_s: float = 1.0,
    now: float = 0.0,
    first_block_retries: int | None = None,
) -> ReadTransfer:
    request = parse_packet(build_request(Opcode.RRQ, "f", "octet", options))
    negotiated = negotiate(
        request,  # type: ignore[arg-type]
        file_size=len(content),
        max_block_size=max_block_size,
        max_window_size=max_window_size,
    )
    extra = {} if first_block_retries is None else {"first_block_retries": first_block_retries}
    return ReadTransfer(content, negotiated, now=now, timeout_s=timeout_s, retries=retries, **extra)


@dataclass
class PairResult:
    server: ReadTransfer
    client: MemoryClient
    now: float
    to_client: Wire
    to_server: Wire
    events: list[object]


def roundtrip_until_done(
    server: ReadTransfer,
    client: MemoryClient,
    to_client: Wire,
    to_server: Wire,
    *,
    max_steps: int = 2_000_000,
) -> PairResult:
    """Move datagrams until the server is DONE or FAILED; jump the clock when idle."""
    now = 0.0
    events: list[object] = []
    to_client.put(server.datagrams_to_send())
    for _ in range(max_steps):
        if server.state in (State.DONE, State.FAILED):
            break
        for datagram in to_client.take():
            to_server.put(client.receive(datagram))
        for datagram in to_server.take():
            server.receive_datagram(datagram, now)
        to_client.put(server.datagrams_to_send())
        if not to_client.queue and not to_server.queue:
            deadline = server.get_timer()
            if deadline is None:
                break
            now = max(now, deadline)
            server.handle_timer(now)
            to_client.put(server.datagrams_to_send())
    while (event := server.next_event()) is not None:
        events.append(event)
    return PairResult(server, client, now, to_client, to_server, events)
