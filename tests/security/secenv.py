"""A real `provisioner serve` on loopback, set up through the real CLI, for attack tests.

The daemon runs as a subprocess (stopped by PID), with its own state directory and SQLite
database, DHCP off or in full/proxy mode without interfaces (no packets: in full mode a
lease row stands for "this address did DHCP with us"), the machine listener and the API
listener on free 127.0.0.1 ports. The attacker is a client bound to 127.0.0.2, which the
Linux loopback interface answers without any setup.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "provisioner"
API_TOKEN_FILE = "api-token"
MAC = "52:54:00:aa:00:01"
UUID = "00000000-0000-4000-8000-5254aa000001"
ATTACKER = "127.0.0.2"

INVENTORY = f"""\
kind: Cluster
name: sec
talosVersion: v1.13.0
kubernetesVersion: 1.33.0
endpoint: https://10.77.0.10:6443
assetSet: talos
installDisk: /dev/vda
---
kind: Machine
name: victim
cluster: sec
role: controlplane
macs: [{MAC}]
uuid: {UUID}
ip: 10.77.0.10
"""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> object:
        return json.loads(self.body)


def request(
    url: str,
    *,
    method: str = "GET",
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Reply:
    """One HTTP request from a chosen loopback source address (plain HTTP)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=30, source_address=(source, 0)
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    root: Path
    settings: Path
    state: Path
    base: str
    api: str
    proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(BIN), "--config", str(self.settings), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def token(self) -> str:
        return (self.state / API_TOKEN_FILE).read_text().strip()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def start(self) -> None:
        log = (self.root / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--config", str(self.settings)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "daemon.log").read_text()[-3000:]
            try:
                if request(self.base + "/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        msg = "daemon did not answer /healthz"
        raise AssertionError(msg)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def add_lease(self, ip: str, mac: str = MAC, machine: str = "victim") -> None:
        """What our DHCP server writes when it ACKs (full mode): a bound lease row."""
        now = datetime.now(UTC)
        with sqlite3.connect(self.state / "provisioner.db") as db:
            db.execute(
                "INSERT INTO lease (ip, mac, client_id, hostname, state, expires_at, machine, instance,"
                " updated_at) VALUES (?, ?, '', '', 'bound', ?, ?, 'test', ?)",
                (ip, mac, (now + timedelta(hours=1)).isoformat(" "), machine, now.isoformat(" ")),
            )

    def wait_events(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Events once `predicate` holds for them (the daemon writes events in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if predicate(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.2)

    def wait_log(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        """The daemon's output once `predicate` holds for it (or a timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            text = (self.root / "daemon.log").read_text(errors="replace")
            if predicate(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.2)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = "limit=500" + (f"&kind={kind}" if kind else "")
        r = request(f"{self.api}/api/v1/events?{query}", headers=self.auth())
        assert r.status == 200, r.text
        items = r.json()["items"]  # type: ignore[index]
        return list(items)


def make_daemon(root: Path, *, dhcp_mode: str = "off", api_extra: str = "", secrets: bool = True) -> Daemon:
    """Settings, inventory, secrets and assets through the CLI; the daemon not yet started."""
    state = root / "state"
    root.mkdir(parents=True, exist_ok=True)
    http_port, api_port = free_port(), free_port()
    settings = root / "provisioner.toml"
    settings.write_text(
        f"""state_dir = "{state}"
[dhcp]
mode = "{dhcp_mode}"
interfaces = []
port = {free_port()}
proxy_port = {free_port()}
[tftp]
enabled = false
[http]
listen = "127.0.0.1:{http_port}"
[api]
listen = "127.0.0.1:{api_port}"
{api_extra}
[trustd]
listen = "127.0.0.1:{free_port()}"
[lifecycle]
script_s = 600
config_s = 600
"""
    )
    scheme = "https" if "tls" in api_extra else "http"
    daemon = Daemon(
        root=root,
        settings=settings,
        state=state,
        base=f"http://127.0.0.1:{http_port}",
        api=f"{scheme}://127.0.0.1:{api_port}",
    )
    (root / "inv.yaml").write_text(INVENTORY)
    (root / "kernel").write_bytes(b"\x7fkernel" * 512)
    (root / "initramfs").write_bytes(b"\x07initrd" * 512)
    daemon.cli("inventory", "apply", str(root / "inv.yaml"))
    if not secrets:
        return daemon
    daemon.cli("cluster", "secrets", "sec")
    daemon.cli(
        "assets", "import", "talos", "--kernel", str(root / "kernel"), "--initramfs", str(root / "initramfs")
    )
    return daemon
