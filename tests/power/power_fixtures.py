"""Helpers shared by the power tests and their fixtures (conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
SENTINEL = "S3ntinel-pw-7f3a"  # the BMC password in every fixture
SIM_PASSWORD = "S3ntinel-sim-91"  # ipmi_sim allows at most 16 characters


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Stop a process we started, by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def ipmitool(port: int, password: str, *args: str, cipher: int = 3) -> str:
    """Run ipmitool -I lanplus against 127.0.0.1:port; the password goes via $IPMI_PASSWORD.

    `-C 3` skips ipmitool's Get Channel Cipher Suites probe, which ipmi_sim does not
    answer (10 s of retries otherwise).
    """
    cmd = ["ipmitool", "-I", "lanplus", "-C", str(cipher), "-H", "127.0.0.1", "-p", str(port)]
    cmd += ["-U", "admin", "-E", *args]
    env = {**os.environ, "IPMI_PASSWORD": password}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class IpmiSim:
    port: int
    password: str
    calls_file: Path

    def calls(self) -> list[str]:
        if not self.calls_file.exists():
            return []
        return self.calls_file.read_text().splitlines()


CHASSIS_SCRIPT = """#!/bin/sh
# ipmi_sim chassis control: $1 device, $2 get|set, then names (get) or name/value pairs.
dir=$(dirname "$0")
echo "$*" >> "$dir/chassis.calls"
shift
op=$1; shift
if [ "$op" = get ]; then
  for name in "$@"; do
    case $name in
      power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
      boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
    esac
  done
else
  while [ $# -ge 2 ]; do
    echo "$2" > "$dir/$1"
    shift 2
  done
fi
"""


@dataclass
class PyghmiBmc:
    port: int
    password: str
    log: Path
    hang: Path
    proc: subprocess.Popen[str] = field(repr=False)

    def entries(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def ops(self) -> list[object]:
        return [entry["op"] for entry in self.entries() if entry["op"] != "rakp1"]


@dataclass
class Sushy:
    port: int
    password: str
    off_system: str  # starts Off
    on_system: str  # starts On


class HostileBmc:
    """A hand-written UDP peer speaking just enough RMCP+ to misbehave (docs/threats.md E8).

    modes: `garbage` (1-byte answers), `short-open` (truncated Open Session Response),
    `short-rakp2` (valid suite-3 Open Session Response, then a truncated RAKP2).
    Records the RMCP+ payload types it receives.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received: list[int] = []
        self.console_sid = b"\0\0\0\0"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            reply = self._answer(data)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def _answer(self, data: bytes) -> bytes | None:
        if self.mode == "garbage":
            return b"\x06"
        if len(data) > 14 and data[4] == 0:  # IPMI 1.5 framing: Get Channel Auth Capabilities
            request = data[14 : 14 + data[13]]
            head = [0x81, (0x07 << 2) | (request[4] & 0x3)]
            body = [0x20, request[4] & 0xFC, 0x38, 0x00, 1, 0x84, 0x04, 0x02, 0, 0, 0, 0]
            payload = [*head, -sum(head) & 0xFF, *body, -sum(body) & 0xFF]
            return bytes([6, 0, 0xFF, 7, 0, *([0] * 8), len(payload), *payload])
        if len(data) < 16 or data[4] != 6:
            return None
        ptype, payload = data[5] & 0x3F, data[16:]
        self.received.append(ptype)
        if ptype == 0x10:  # Open Session Request
            self.console_sid = payload[4:8]
            response = bytes([payload[0], 0, 4, 0]) + payload[4:8]
            if self.mode != "short-open":
                response += b"\x01\x02\x03\x04" + bytes(
                    [0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0]
                )
            return self._rmcp(0x11, response)
        if ptype == 0x12 and self.mode == "short-rakp2":  # RAKP1 -> truncated RAKP2
            return self._rmcp(0x13, bytes([payload[0], 0, 0, 0]) + self.console_sid + b"\x55" * 12)
        return None

    @staticmethod
    def _rmcp(ptype: int, payload: bytes) -> bytes:
        size = len(payload).to_bytes(2, "little")
        return bytes([6, 0, 0xFF, 7, 6, ptype, *([0] * 8)]) + size + payload


@dataclass
class Daemon:
    """A real `provisioner serve` subprocess on 127.0.0.1 (HTTP only: DHCP/TFTP/trustd off)."""

    config: Path
    port: int
    proc: subprocess.Popen[str] = field(repr=False)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PROVISIONER_CONFIG": str(self.config)}

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real `provisioner` command against this daemon's settings."""
        return subprocess.run(
            [str(PROVISIONER), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


PROVISIONER = Path(sys.executable).with_name("provisioner")


def daemon_config(base: Path, *, power_timeout_s: float = 8.0, telemetry: bool = False) -> tuple[Path, int]:
    """A settings file for a loopback-only daemon under `base`; returns (path, API port)."""
    port = free_tcp_port()
    config = base / "provisioner.toml"
    config.write_text(
        f"""state_dir = {str(base / "state")!r}
log_level = "warning"

[http]
listen = "127.0.0.1:{free_tcp_port()}"

[api]
listen = "127.0.0.1:{port}"

[dhcp]
mode = "off"

[tftp]
enabled = false

[trustd]
enabled = false

[power]
timeout_s = {power_timeout_s}
retries = 0
"""
    )
    if not telemetry:
        # Its fixed default ports (4002/4003) would collide between parallel daemons; a
        # caller that wants it appends its own [telemetry] section on free ports.
        with config.open("a") as f:
            f.write("\n[telemetry]\nenabled = false\n")
    return config, port


def start_daemon(config: Path, port: int) -> Daemon:
    """Start `provisioner serve` (stderr to serve.log beside the config); wait for the power API.

    /healthz answers as soon as the web part is up; the power service starts after it, and
    registers its counters then, so the daemon is ready for power calls once /metrics (on
    the API listener, `port`) shows them.
    """
    log = (config.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(PROVISIONER), "serve", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
                if b"provisioner_power_" in resp.read():
                    break
        except OSError:
            pass
        if proc.poll() is not None:
            stop(proc)
            msg = "provisioner serve exited: " + (config.parent / "serve.log").read_text()
            raise AssertionError(msg)
        assert time.monotonic() < deadline, "provisioner serve did not become ready"
        time.sleep(0.1)
    return Daemon(config, port, proc)
