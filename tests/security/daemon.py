"""A real `provisioner serve` on loopback for the security tests (subprocess, free ports)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PROVISIONER = Path(sys.executable).with_name("provisioner")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    state_dir: Path
    root: Path
    http: int
    tftp: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def db_bytes(self) -> int:
        """Size of the SQLite database and its WAL/SHM files."""
        return sum(p.stat().st_size for p in self.state_dir.glob("provisioner.db*"))


def healthz(base: str, timeout: float = 5.0) -> int:
    with urllib.request.urlopen(f"{base}/healthz", timeout=timeout) as resp:  # noqa: S310 - loopback
        return int(resp.status)


@contextlib.asynccontextmanager
async def running_daemon(tmp: Path, extra_toml: str = "") -> AsyncIterator[Daemon]:
    """Start the daemon (DHCP off, trustd off), wait for /healthz, SIGTERM it after."""
    root = tmp / "tftproot"
    root.mkdir()
    (root / "undionly.kpxe").write_bytes(bytes(range(256)) * 400)  # 100 KiB
    daemon = Daemon(tmp / "state", root, free_port(), free_port(socket.SOCK_DGRAM), tmp / "daemon.log")
    config = tmp / "provisioner.toml"
    config.write_text(
        f'state_dir = "{daemon.state_dir}"\nlog_format = "text"\nlog_level = "warning"\n'
        '[dhcp]\nmode = "off"\n'
        f'[tftp]\nport = {daemon.tftp}\nlisten_address = "127.0.0.1"\nipxe_dir = "{root}"\n'
        f'[http]\nlisten = "127.0.0.1:{daemon.http}"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'  # never the shared default 8081
        "[trustd]\nenabled = false\n"
        # Off unless asked: its fixed default ports (4002/4003) would collide between daemons.
        + ("" if "[telemetry]" in extra_toml else "[telemetry]\nenabled = false\n")
        + extra_toml
    )
    with daemon.log.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            str(PROVISIONER), "serve", "--config", str(config), stdout=log, stderr=log
        )
    try:
        for _ in range(100):
            await asyncio.sleep(0.2)
            if proc.returncode is not None:
                msg = f"daemon exited: {daemon.log.read_text()[-2000:]}"
                raise AssertionError(msg)
            with contextlib.suppress(OSError):
                if await asyncio.to_thread(healthz, daemon.base, 1.0) == 200:
                    break
        else:
            msg = "daemon did not answer /healthz"
            raise AssertionError(msg)
        yield daemon
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
