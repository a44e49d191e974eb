"""blksize against a real 1500-byte path (docs/threats.md B6), in two network namespaces.

Loopback has a 64 KiB MTU, so the path-MTU clamp only shows on a real link: the server
runs in one namespace (bench/lib_tftp.py serve, with block_size_max raised to 65464) and
a raw client in the other asks for blksize 9000 over a veth pair with MTU 1500.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

REPO = Path(__file__).resolve().parents[2]
SRV_IP, CLI_IP = "10.88.0.1", "10.88.0.2"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

CLIENT = f"""
import socket, sys
sys.path.insert(0, {str(REPO)!r})
from provisioner.tftp.codec import Opcode, build_request, parse_packet
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(build_request(Opcode.RRQ, "f.bin", "octet", (("blksize", "9000"),)), ("{SRV_IP}", 69))
print(parse_packet(s.recvfrom(70000)[0]))
"""


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    srv, cli = f"pv-tftp-{tag}-s", f"pv-tftp-{tag}-c"
    try:
        _ip("netns", "add", srv)
        _ip("netns", "add", cli)
        _ip("link", "add", f"pvts{tag}", "mtu", "1500", "type", "veth", "peer", f"pvtc{tag}")
        for ns, dev, addr in ((srv, f"pvts{tag}", SRV_IP), (cli, f"pvtc{tag}", CLI_IP)):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/16", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield srv, cli
    finally:
        for ns in (srv, cli):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.fixture
async def served(netns_pair: tuple[str, str], tmp_path: Path) -> AsyncIterator[str]:
    srv, cli = netns_pair
    (tmp_path / "f.bin").write_bytes(b"x" * 100_000)
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", srv, sys.executable, str(REPO / "bench" / "lib_tftp.py"),
        "serve", "--root", str(tmp_path), "--block-size-max", "65464",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(100):
            check = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", srv, "ss", "-Huln", "sport = :69",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await check.communicate()
            if out.strip():
                break
            await asyncio.sleep(0.05)
        yield cli
    finally:
        proc.terminate()
        await proc.wait()


async def test_blksize_clamped_to_path_mtu(served: str):
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", served, sys.executable, "-c", CLIENT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    # 1500 - 20 (IP) - 8 (UDP) - 4 (TFTP) = 1468, not the 9000 asked for.
    assert out.decode().strip() == "OAck(options=(('blksize', '1468'),))"
