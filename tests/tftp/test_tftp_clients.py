"""Real TFTP clients against TftpServer on 127.0.0.1: tftp-hpa, atftp, curl, tftpy."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest
import tftpy

from provisioner.tftp.codec import ErrorCode, Opcode, build_ack, build_error, build_request

from .tftp_env import SIZES, ServerFactory
from .tftp_raw import RawUdp

if TYPE_CHECKING:
    from pathlib import Path

SMALL = [name for name, size in SIZES.items() if size <= 1 << 20]


async def _run(*argv: str, limit: float = 30.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), limit)
    return proc.returncode or 0, out.decode(errors="replace")


async def tftp_hpa(port: int, name: str, local: Path, mode: str = "binary") -> str:
    _, out = await _run("tftp", "127.0.0.1", str(port), "-m", mode, "-c", "get", name, str(local))
    return out


async def atftp(port: int, name: str, local: Path, *options: str) -> tuple[int, str]:
    argv = ["atftp"]
    for option in options:
        argv += ["--option", option]
    return await _run(*argv, "-g", "-r", name, "-l", str(local), "127.0.0.1", str(port))


async def curl(port: int, name: str, local: Path, blksize: int | None = None) -> tuple[int, str]:
    argv = ["curl", "-sS", "-o", str(local)]
    if blksize:
        argv += ["--tftp-blksize", str(blksize)]
    return await _run(*argv, f"tftp://127.0.0.1:{port}/{name}")


def _tftpy(port: int, name: str, local: Path, blksize: int) -> None:
    logging.getLogger("tftpy").setLevel(logging.WARNING)
    client = tftpy.TftpClient("127.0.0.1", port, options={"blksize": blksize})
    client.download(name, str(local), timeout=2)


def _complete(events, name: str) -> dict[str, object]:
    done = [e.data for e in events.events if e.data["file"] == name]
    assert done, events.events
    assert done[-1]["outcome"] == "complete", done[-1]
    return done[-1]


@pytest.mark.parametrize("single_port", [False, True])
@pytest.mark.parametrize("name", SMALL)
async def test_tftp_hpa(tftp_server: ServerFactory, tftp_root: Path, tmp_path: Path, name, single_port):
    server, events = await tftp_server(single_port=single_port)
    local = tmp_path / "out"
    await tftp_hpa(server.port, name, local)
    assert local.read_bytes() == (tftp_root / name).read_bytes()
    data = _complete(events, name)
    assert data["bytes"] == SIZES[name]
    assert data["client"] == "127.0.0.1"
    assert isinstance(data["duration_s"], float)


@pytest.mark.parametrize("options", [(), ("blksize 1428",), ("blksize 1428", "windowsize 8")])
@pytest.mark.parametrize("name", SMALL)
async def test_atftp(tftp_server: ServerFactory, tftp_root: Path, tmp_path: Path, name, options):
    server, events = await tftp_server()
    local = tmp_path / "out"
    code, out = await atftp(server.port, name, local, *options)
    assert code == 0, out
    assert local.read_bytes() == (tftp_root / name).read_bytes()
    data = _complete(events, name)
    if "windowsize 8" in options:
        assert data["windowsize"] == 8
        assert data["blksize"] == 1428


# curl 7.88 fails every 0-byte TFTP download with "(71) getpeername() failed", against
# tftpd-hpa too (a client bug: it never connects its socket when the first DATA is
# the last); the other three clients cover 0 B. 8-byte blocks are not tried on 1 MiB
# (131k round trips); the in-memory tests cover them.
CURL_CASES = [
    (name, blksize)
    for name in SMALL
    if SIZES[name] > 0
    for blksize in (None, 8, 1468, 8192)
    if not (blksize == 8 and SIZES[name] > 4096)
]


@pytest.mark.parametrize(("name", "blksize"), CURL_CASES)
async def test_curl(tftp_server: ServerFactory, tftp_root: Path, tmp_path: Path, name, blksize):
    server, events = await tftp_server()
    local = tmp_path / "out"
    code, out = await curl(server.port, name, local, blksize)
    assert code == 0, out
    assert local.read_bytes() == (tftp_root / name).read_bytes()
    assert _complete(events, name)["bytes"] == SIZES[name]


@pytest.mark.parametrize("name", SMALL)
async def test_tftpy(tftp_server: ServerFactory, tftp_root: Path, tmp_path: Path, name):
    server, events = await tftp_server(single_port=name == "f1m.bin")
    local = tmp_path / "out"
    await asyncio.to_thread(_tftpy, server.port, name, local, 1468)
    assert local.read_bytes() == (tftp_root / name).read_bytes()
    _complete(events, name)


ROLLOVER_CLIENTS = ["atftp-window", "tftp-hpa", "curl", "tftpy"]


@pytest.mark.slow
@pytest.mark.parametrize("client", ROLLOVER_CLIENTS)
async def test_rollover_40mib(tftp_server: ServerFactory, tftp_root: Path, tmp_path: Path, client):
    # 40 MiB at blksize 512 is 81,920 blocks: the block number wraps to 0 (docs/threats.md B11).
    server, events = await tftp_server()
    local = tmp_path / "out"
    if client == "atftp-window":
        code, out = await atftp(server.port, "f40m.bin", local, "blksize 512", "windowsize 16")
        assert code == 0, out
    elif client == "tftp-hpa":
        await tftp_hpa(server.port, "f40m.bin", local)
    elif client == "curl":
        code, out = await curl(server.port, "f40m.bin", local, 512)
        assert code == 0, out
    else:
        await asyncio.to_thread(_tftpy, server.port, "f40m.bin", local, 512)
    assert local.read_bytes() == (tftp_root / "f40m.bin").read_bytes()
    data = _complete(events, "f40m.bin")
    assert data["bytes"] == 40 << 20
    assert data["blksize"] == 512


async def test_netascii(tftp_server: ServerFactory, tftp_root: Path, tmp_path: Path):
    # RFC 1350 netascii served correctly: tftp-hpa converts back to local text.
    server, events = await tftp_server()
    local = tmp_path / "out"
    await tftp_hpa(server.port, "text.txt", local, mode="netascii")
    assert local.read_bytes() == (tftp_root / "text.txt").read_bytes()
    _complete(events, "text.txt")


async def test_counters_include_running_transfers(tftp_server: ServerFactory):
    """Sessions keep per-block counts locally; counters() adds them while they run."""
    server, _ = await tftp_server()
    async with RawUdp() as udp:
        udp.send(build_request(Opcode.RRQ, "f1m.bin", "octet"), ("127.0.0.1", server.port))
        for block in range(1, 4):
            item = await udp.recv(2.0)
            assert item is not None
            data, tid = item
            assert data[:4] == bytes([0, 3, 0, block])
            udp.send(build_ack(block), tid)
        item = await udp.recv(2.0)  # DATA 4 is out once ACK 3 has been read
        assert item is not None
        running = server.counters()
        assert running["active_transfers"] == 1
        assert running["received"] == 1 + 3  # the RRQ on the listener, 3 ACKs on the TID
        assert running["datagrams_sent"] == 4
        udp.send(build_error(ErrorCode.NOT_DEFINED, "stop"), item[1])
        for _ in range(100):
            if server.counters()["active_transfers"] == 0:
                break
            await asyncio.sleep(0.01)
    after = server.counters()
    assert after["active_transfers"] == 0
    assert after["received"] == 1 + 3 + 1  # the ERROR too, folded in once at the end
    assert after["datagrams_sent"] == 4


async def test_counters_after_transfers(tftp_server: ServerFactory, tmp_path: Path):
    server, _ = await tftp_server()
    await curl(server.port, "f512.bin", tmp_path / "a")
    await curl(server.port, "missing.bin", tmp_path / "b")
    counters = server.counters()
    assert counters["transfers_complete"] == 1
    assert counters["refused_not_found"] == 1
    assert counters["bytes_sent"] == 512
    assert counters["active_transfers"] == 0
