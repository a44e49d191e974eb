"""docs/threats.md section B against a live server, each row followed by a survival check."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from provisioner.events import Severity
from provisioner.startup import StartupError
from provisioner.tftp.codec import (
    Data,
    ErrorPacket,
    OAck,
    Opcode,
    build_ack,
    build_error,
    build_request,
    parse_packet,
)

from .tftp_raw import RawUdp, download

if TYPE_CHECKING:
    from .tftp_env import ServerFactory


def _listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def _fd_count() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


async def survives(port: int, root: Path) -> None:
    """The survival check: a normal RRQ still returns the exact file."""
    assert await download(port, "f1m.bin", (("blksize", "1468"),)) == (root / "f1m.bin").read_bytes()


async def ask(port: int, request: bytes, quiet: float = 0.2) -> list[object]:
    async with RawUdp() as udp:
        udp.send(request, ("127.0.0.1", port))
        return [parse_packet(d) for d, _ in await udp.drain(quiet)]


TRAVERSAL = ["../../etc/passwd", "/etc/passwd", "a/../../etc/passwd", "..\\..\\x", "etc/passwd"]


@pytest.mark.parametrize("name", [*TRAVERSAL, "passwd", "../aa:bb:cc:dd:ee:ff/f512.bin"])
async def test_b1_b13_traversal_refused(tftp_server: ServerFactory, tftp_root: Path, name):
    server, events = await tftp_server()
    replies = await ask(server.port, build_request(Opcode.RRQ, name))
    assert len(replies) == 1
    assert isinstance(replies[0], ErrorPacket)
    assert replies[0].code in (1, 2)
    assert events.events[-1].data["outcome"] == "refused"
    assert events.events[-1].severity is Severity.WARNING
    await survives(server.port, tftp_root)


async def test_b1_nul_inside_name(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server()
    replies = await ask(server.port, b"\x00\x01f512.bin\x00../x\x00octet\x00")
    # The NUL ends the name; "../x" lands in the mode field: ERROR 4, nothing served.
    assert [type(r) for r in replies] == [ErrorPacket]
    assert not any(isinstance(r, Data) for r in replies)
    await survives(server.port, tftp_root)


@pytest.mark.parametrize("name", TRAVERSAL)
async def test_b1_traversal_with_tftp_hpa(tftp_server: ServerFactory, tmp_path: Path, name):
    # tftp-hpa sends the name exactly as given (docs/testing.md).
    server, _ = await tftp_server()
    local = tmp_path / "out"
    proc = await asyncio.create_subprocess_exec(
        "tftp", "127.0.0.1", str(server.port), "-m", "binary", "-c", "get", name, str(local),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert b"Error code" in out
    assert not local.exists() or local.read_bytes() == b""


async def test_b2_write_request_refused(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server()
    before = _listing(tftp_root)
    for name in ("x", "f512.bin", "../x"):
        replies = await ask(server.port, build_request(Opcode.WRQ, name))
        assert replies == [ErrorPacket(2, "Read-only server")]
    assert _listing(tftp_root) == before
    assert server.counters()["refused_write_request"] == 3
    await survives(server.port, tftp_root)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01f512.bin",  # no NUL
        b"\x00\x01f512.bin\x00",  # no mode
        b"\x00\x01f512.bin\x00netascii",  # mode without NUL
        b"\x00\x00f512.bin\x00octet\x00",  # opcode 0
        b"\x00\x07f512.bin\x00octet\x00",
        b"\xff\xff\x00\x00",
        b"\x00\x01",
        b"\x00",
        b"",
        b"\x00\x04\x00\x01",  # ACK to the listener
        b"\x00\x05\x00\x00oops\x00",  # ERROR to the listener
    ],
)
async def test_b3_malformed_framing_is_silent(tftp_server: ServerFactory, tftp_root: Path, raw):
    server, _ = await tftp_server()
    assert await ask(server.port, raw, quiet=0.15) == []
    await survives(server.port, tftp_root)


@pytest.mark.parametrize("mode", ["mail", "binary", "x"])
async def test_b3_unsupported_mode_gets_error_4(tftp_server: ServerFactory, tftp_root: Path, mode):
    server, _ = await tftp_server()
    replies = await ask(server.port, build_request(Opcode.RRQ, "f512.bin", mode))
    assert replies == [ErrorPacket(4, "Unsupported mode")]
    # Mode matching is case-insensitive (RFC 1350 §5).
    assert await download(server.port, "f512.bin", mode="OCTET") == (tftp_root / "f512.bin").read_bytes()


@pytest.mark.parametrize("length", [512, 1400])
async def test_b4_overlong_name(tftp_server: ServerFactory, tftp_root: Path, length):
    server, events = await tftp_server()
    replies = await ask(server.port, build_request(Opcode.RRQ, "a" * length))
    assert replies == [ErrorPacket(1, "File not found")]
    assert len(str(events.events[-1].data["file"])) < 100  # logged truncated
    await survives(server.port, tftp_root)


BAD_OPTIONS = [
    ("blksize", "0"), ("blksize", "7"), ("blksize", "65465"), ("blksize", "99999999"),
    ("blksize", "-1"), ("blksize", "abc"), ("blksize", ""), ("tsize", "x"),
    ("timeout", "0"), ("timeout", "256"), ("timeout", "255"), ("windowsize", "0"),
    ("windowsize", "-3"),
]  # fmt: skip


@pytest.mark.parametrize("option", BAD_OPTIONS)
async def test_b5_bad_option_values_are_ignored(tftp_server: ServerFactory, tftp_root: Path, option):
    server, _ = await tftp_server()
    replies = await ask(server.port, build_request(Opcode.RRQ, "f512.bin", "octet", (option,)))
    # Nothing acceptable: no OACK, plain RFC 1350 DATA 1 of 512 bytes.
    assert isinstance(replies[0], Data)
    assert replies[0].block == 1
    assert len(replies[0].payload) == 512
    await survives(server.port, tftp_root)


async def test_b5_repeated_many_and_dangling_options(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server()
    many = b"".join(f"x{i}\x001\x00".encode() for i in range(300))
    raw = (
        build_request(Opcode.RRQ, "f512.bin", "octet", (("blksize", "1024"), ("BLKSIZE", "9")))
        + many
        + b"tsize\x00"
    )
    replies = await ask(server.port, raw)
    assert replies[0] == OAck((("blksize", "1024"),))
    await survives(server.port, tftp_root)


async def test_b6_blksize_clamped(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server(block_size_max=1468)
    opts = (("blksize", "9000"), ("tsize", "0"))
    replies = await ask(server.port, build_request(Opcode.RRQ, "f1m.bin", "octet", opts))
    assert replies[0] == OAck((("blksize", "1468"), ("tsize", str(1 << 20))))
    await survives(server.port, tftp_root)


async def test_b7_duplicate_ack_storm(tftp_server: ServerFactory, tftp_root: Path):
    # Each ACK sent twice, 300 ms apart; RFC 1123 §4.2.3.1: never resend on a dup ACK.
    server, _ = await tftp_server(timeout_s=2.0)
    content = (tftp_root / "f1m.bin").read_bytes()[:0]
    async with RawUdp() as udp:
        udp.send(build_request(Opcode.RRQ, "f512.bin"), ("127.0.0.1", server.port))
        data_packets = 0
        while (item := await udp.recv(0.6)) is not None:
            raw, tid = item
            packet = parse_packet(raw)
            assert isinstance(packet, Data)
            data_packets += 1
            content += packet.payload
            udp.send(build_ack(packet.block), tid)
            await asyncio.sleep(0.3)
            udp.send(build_ack(packet.block), tid)
    assert data_packets == 2  # 512 bytes: DATA 1 (full) and DATA 2 (empty), once each
    assert content == (tftp_root / "f512.bin").read_bytes()
    await survives(server.port, tftp_root)


async def test_b8_wrong_tid_and_wrong_blocks(tftp_server: ServerFactory, tftp_root: Path):
    server, events = await tftp_server()
    async with RawUdp() as udp, RawUdp() as intruder:
        udp.send(
            build_request(Opcode.RRQ, "f1m.bin", "octet", (("tsize", "0"),)),
            ("127.0.0.1", server.port),
        )
        oack, tid = await udp.recv()  # type: ignore[misc]
        assert isinstance(parse_packet(oack), OAck)
        udp.send(build_ack(1), tid)  # ACK 1 while the OACK is unacknowledged: ignored
        intruder.send(build_ack(0), tid)  # another source port: the kernel drops it
        assert await udp.recv(0.2) is None
        assert await intruder.recv(0.2) is None  # no ERROR 5 to the wrong TID
        udp.send(build_ack(0), tid)
        first, _ = await udp.recv()  # type: ignore[misc]
        assert parse_packet(first) == Data(1, (tftp_root / "f1m.bin").read_bytes()[:512])
        udp.send(build_ack(6), tid)  # block n+5: never sent, ignored
        intruder.send(build_ack(1), tid)
        assert await udp.recv(0.2) is None
        udp.send(build_ack(1), tid)
        second, _ = await udp.recv()  # type: ignore[misc]
        assert parse_packet(second).block == 2  # type: ignore[union-attr]
        udp.send(build_error(0, "bye"), tid)
    await survives(server.port, tftp_root)
    await asyncio.sleep(0.05)  # the server handles the final ACK after the client returns
    assert [e.data["outcome"] for e in events.events] == ["client_error", "complete"]


async def test_b9_spoofed_rrq_bounded_amplification(tftp_server: ServerFactory, tftp_root: Path):
    server, events = await tftp_server(timeout_s=0.05, retries=3)
    async with RawUdp() as victim:
        victim.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
        received = await victim.drain(1.0)  # 3 x 0.05 s, then silence
    # 1 block + 2 retransmissions: an unacknowledged first block gives up early (issue 14)
    assert len(received) == 3
    assert events.events[-1].data["outcome"] == "timeout"
    assert server.counters()["active_transfers"] == 0
    await survives(server.port, tftp_root)


async def test_b10_caps_and_reaping(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server(timeout_s=0.05, retries=1, max_transfers=50, max_transfers_per_client=1000)
    fds_before = _fd_count()
    clients = [RawUdp() for _ in range(300)]
    try:
        for udp in clients:
            udp.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if server.counters().get("requests", 0) == 300:
                break
        counters = server.counters()
        assert counters["requests"] == 300  # none lost in the listener's buffer
        assert counters["transfers_started"] == 50
        assert counters["refused_busy"] == 250
    finally:
        for udp in clients:
            udp.sock.close()
    await asyncio.sleep(0.5)  # 0.05 + 0.1 s of retries, then reaped
    assert server.counters()["active_transfers"] == 0
    assert _fd_count() <= fds_before
    await survives(server.port, tftp_root)


async def test_b10_per_client_cap(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server(max_transfers_per_client=2, timeout_s=0.05, retries=1)
    async with RawUdp() as a, RawUdp() as b, RawUdp() as c:
        for udp in (a, b, c):
            udp.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
        third = await c.recv()
        assert third is not None
        assert parse_packet(third[0]) == ErrorPacket(0, "Too many transfers")
    await asyncio.sleep(0.4)
    await survives(server.port, tftp_root)


async def test_b12_malicious_error_packet(tftp_server: ServerFactory, tftp_root: Path):
    server, events = await tftp_server()
    async with RawUdp() as udp:
        udp.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
        _, tid = await udp.recv()  # type: ignore[misc]
        udp.send(b"\x00\x05\x00\x00" + b"\n%s%n\x1b[2J" * 140, tid)  # 1400 bytes, no NUL
        assert await udp.recv(0.3) is None  # no answer to an ERROR
    event = events.events[-1]
    assert event.data["outcome"] == "client_error"
    assert "\n" not in event.message
    assert len(str(event.data["reason"])) < 1000
    await survives(server.port, tftp_root)


async def test_duplicate_rrq_does_not_start_second_transfer(tftp_server: ServerFactory):
    server, _ = await tftp_server()
    async with RawUdp() as udp:
        for _ in range(3):
            udp.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
        first = await udp.recv()
        assert first is not None
        assert await udp.recv(0.2) is None
    assert server.counters()["duplicate_request"] == 2
    assert server.counters()["transfers_started"] == 1


async def test_stop_aborts_running_transfers(tftp_server: ServerFactory):
    server, events = await tftp_server()
    async with RawUdp() as udp:
        udp.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
        assert await udp.recv() is not None
        await server.stop()
        last = await udp.recv()
        assert last is not None
        assert parse_packet(last[0]) == ErrorPacket(0, "server shutting down")
    assert events.events[-1].data["outcome"] == "aborted"


async def test_client_gone_ends_transfer_fast(tftp_server: ServerFactory, tftp_root: Path):
    # The client closes its port mid-transfer: the retransmission draws ICMP port
    # unreachable, the connected socket reports it, and the transfer ends at once.
    server, events = await tftp_server(timeout_s=0.05, retries=50)
    udp = RawUdp()
    udp.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
    assert await udp.recv() is not None
    udp.sock.close()
    for _ in range(50):
        await asyncio.sleep(0.02)
        if server.counters()["active_transfers"] == 0:
            break
    assert server.counters()["active_transfers"] == 0
    assert events.events[-1].data["outcome"] == "aborted"
    assert "unreachable" in str(events.events[-1].data["reason"])
    await survives(server.port, tftp_root)


async def test_single_port_stray_packets_dropped(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server(single_port=True)
    async with RawUdp() as udp, RawUdp() as intruder:
        udp.send(build_request(Opcode.RRQ, "f1m.bin"), ("127.0.0.1", server.port))
        first = await udp.recv()
        assert first is not None
        assert first[1] == ("127.0.0.1", server.port)  # single port: replies come from 69
        intruder.send(build_ack(1), ("127.0.0.1", server.port))
        assert await intruder.recv(0.2) is None
        udp.send(build_error(0, "done"), ("127.0.0.1", server.port))
    assert server.counters()["dropped_no_transfer"] == 1
    await survives(server.port, tftp_root)


async def test_netascii_of_large_file_refused(tftp_server: ServerFactory, tftp_root: Path):
    server, _ = await tftp_server()
    replies = await ask(server.port, build_request(Opcode.RRQ, "f40m.bin", "netascii"))
    assert replies == [ErrorPacket(0, "Use octet mode")]
    await survives(server.port, tftp_root)


async def test_garbage_on_transfer_socket_is_dropped(tftp_server: ServerFactory):
    server, events = await tftp_server()
    async with RawUdp() as udp:
        udp.send(build_request(Opcode.RRQ, "f512.bin"), ("127.0.0.1", server.port))
        first = await udp.recv()
        assert first is not None
        tid = first[1]
        udp.send(b"\x00\x09garbage", tid)
        udp.send(b"\x00\x04\x00", tid)
        assert await udp.recv(0.2) is None
        udp.send(build_ack(1), tid)
        last = await udp.recv()
        assert last is not None
        assert parse_packet(last[0]) == Data(2, b"")
        udp.send(build_ack(2), tid)
        await asyncio.sleep(0.05)
    assert server.counters()["malformed"] == 2
    assert events.events[-1].data["outcome"] == "complete"


async def test_port_in_use_is_an_error(tftp_server: ServerFactory):
    first, _ = await tftp_server()
    # One line naming the setting and value (issue 11 item 4), not a bare OSError.
    with pytest.raises(StartupError, match=rf"^tftp.port 127.0.0.1:{first.port}: address already in use$"):
        await tftp_server(port=first.port)
