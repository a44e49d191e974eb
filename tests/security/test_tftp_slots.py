"""Issue 14 (medium): spoofed, never-acknowledged read requests must not hold TFTP slots.

Before the fix, 200 spoofed RRQs from 50 addresses (4 each, the per-client cap) kept
the 200-slot table full for ~40 s (the full 1+2+4+8+8+8+8 s backoff) and real clients
got "Server busy". Now a first block that is never acknowledged is retransmitted twice
at the server's timeout and dropped (3 s at the defaults, FIRST_BLOCK_RETRIES), and a
full table evicts the oldest never-acknowledged transfer before refusing a new client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import TYPE_CHECKING

import pytest

from provisioner.tftp.codec import Opcode, build_ack, build_request, parse_packet
from provisioner.tftp.transfer import FIRST_BLOCK_RETRIES, TransferFailed
from tests.tftp.tftp_pair import make_transfer

from .daemon import Daemon, running_daemon

if TYPE_CHECKING:
    from pathlib import Path

SPOOFERS = 50
PER_SPOOFER = 8  # more sockets than the per-client cap (4): the table stays full


def test_unacknowledged_first_block_gives_up_after_three_timeouts() -> None:
    # A spoofed RRQ asking for the longest timeout (RFC 2349: 255 s) still costs 3 s.
    server = make_transfer(b"x" * 100_000, (("timeout", "255"), ("blksize", "1400")), timeout_s=1.0)
    sent = len(server.datagrams_to_send())
    deadlines = []
    while (deadline := server.get_timer()) is not None:
        deadlines.append(deadline)
        server.handle_timer(deadline)
        sent += len(server.datagrams_to_send())
    assert deadlines == [1.0, 2.0, 3.0]
    assert sent == 1 + FIRST_BLOCK_RETRIES
    event = server.next_event()
    assert isinstance(event, TransferFailed) and "never acknowledged" in event.reason


def test_acknowledged_transfer_keeps_full_backoff() -> None:
    server = make_transfer(b"x" * 100_000, timeout_s=1.0, retries=6)
    server.datagrams_to_send()
    server.receive_datagram(build_ack(1), 0.5)
    deadlines = []
    while (deadline := server.get_timer()) is not None:
        deadlines.append(deadline)
        server.handle_timer(deadline)
    assert len(deadlines) == 7 and deadlines[-1] - 0.5 == 1 + 2 + 4 + 8 + 8 + 8 + 8


async def _spoof(daemon: Daemon, stop: asyncio.Event) -> int:
    """RRQs that are never acknowledged, from 127.0.0.2-51, refreshed every second.

    A slot lives 3 s unacknowledged, so a refresh a second keeps the table full; a faster
    flood only adds refused requests ("Too many transfers"), which is a CPU flood, not
    the slot exhaustion this test is about.
    """
    socks = []
    for i in range(SPOOFERS):
        for _ in range(PER_SPOOFER):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.bind((f"127.0.0.{2 + i}", 0))
            socks.append(sock)
    sent = 0
    request = build_request(Opcode.RRQ, "undionly.kpxe", "octet", (("blksize", "1400"),))
    try:
        while not stop.is_set():
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendto(request, ("127.0.0.1", daemon.tftp))
                    sent += 1
                with contextlib.suppress(OSError):
                    while sock.recv(2048):  # drain, never ACK
                        pass
            await asyncio.sleep(1.0)
    finally:
        for sock in socks:
            sock.close()
    return sent


async def _client(*argv: str) -> tuple[int, float, str]:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), time.monotonic() - start, out.decode(errors="replace")


@pytest.mark.slow
async def test_real_clients_get_slots_while_spoofed_requests_hold_the_table(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:  # defaults: 200 slots, 4 per client
        stop = asyncio.Event()
        flood = asyncio.create_task(_spoof(daemon, stop))
        try:
            await asyncio.sleep(2.5)  # the table is full of never-acknowledged transfers
            port = str(daemon.tftp)
            out = {name: tmp_path / f"{name}.kpxe" for name in ("hpa", "atftp", "curl")}
            results = await asyncio.gather(
                _client(
                    "tftp", "127.0.0.1", port, "-m", "binary", "-c", "get", "undionly.kpxe", str(out["hpa"])
                ),
                _client("atftp", "--get", "-r", "undionly.kpxe", "-l", str(out["atftp"]), "127.0.0.1", port),
                _client("curl", "-sS", "-o", str(out["curl"]), f"tftp://127.0.0.1:{port}/undionly.kpxe"),
            )
        finally:
            stop.set()
            sent = await flood
    print(f"spoofed RRQs {sent}; clients {[(rc, round(t, 2)) for rc, t, _ in results]}")
    assert sent >= SPOOFERS * PER_SPOOFER * 3  # the flood ran the whole time
    expected = (daemon.root / "undionly.kpxe").read_bytes()
    for (rc, took, text), path in zip(results, out.values(), strict=True):
        assert rc == 0 and "busy" not in text.lower(), text
        assert path.read_bytes() == expected
        assert took < 10.0, text  # not after the old ~40 s hold


async def test_spoofed_slots_are_free_again_within_seconds(tmp_path: Path) -> None:
    """200 RRQs never ACKed; 4 s later the same 50 addresses can start transfers again."""
    async with running_daemon(tmp_path) as daemon:
        socks = []
        try:
            for i in range(SPOOFERS * 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((f"127.0.0.{2 + i % SPOOFERS}", 0))
                sock.settimeout(2.0)
                socks.append(sock)
                sock.sendto(build_request(Opcode.RRQ, "undionly.kpxe", "octet"), ("127.0.0.1", daemon.tftp))
            await asyncio.sleep(4.0)  # 3 x timeout_s (1 s), with slack for a loaded machine
            fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(fresh)
            fresh.bind(("127.0.0.2", 0))  # an address that already held 4 transfers
            fresh.settimeout(5.0)
            fresh.sendto(build_request(Opcode.RRQ, "undionly.kpxe", "octet"), ("127.0.0.1", daemon.tftp))
            reply = parse_packet(await asyncio.to_thread(fresh.recv, 2048))
            assert type(reply).__name__ == "Data", reply  # not "Too many transfers"
        finally:
            for sock in socks:
                sock.close()
