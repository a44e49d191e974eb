"""Network namespaces for real-peer tests: created per test, always removed."""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=60)


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        ["ip", "netns", "exec", ns, *args], check=False, capture_output=True, text=True, timeout=timeout
    )
    if check and res.returncode:
        msg = f"{args} failed ({res.returncode}): {res.stderr[-3000:]} {res.stdout[-2000:]}"
        raise AssertionError(msg)
    return res


@dataclass
class Segment:
    """Namespaces joined on one L2 segment; `procs` are killed on the way out."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def add_ns(self, role: str) -> str:
        name = self.ns(role)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        in_ns(name, "ip", "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth pair from namespace a to namespace b."""
        tmp_a, tmp_b = f"pv{secrets.token_hex(4)}", f"pv{secrets.token_hex(4)}"
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", self.ns(a))
        sh("ip", "link", "set", tmp_b, "netns", self.ns(b))
        in_ns(self.ns(a), "ip", "link", "set", tmp_a, "name", a_if)
        in_ns(self.ns(b), "ip", "link", "set", tmp_b, "name", b_if)
        in_ns(self.ns(a), "ip", "link", "set", a_if, "up")
        in_ns(self.ns(b), "ip", "link", "set", b_if, "up")

    def addr(self, role: str, iface: str, cidr: str) -> None:
        in_ns(self.ns(role), "ip", "addr", "add", cidr, "dev", iface)

    def spawn(self, role: str, args: Sequence[str], **kw: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), *args],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            **kw,
        )  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    proc.kill()
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        for name in self.namespaces:
            # Anything still running inside (dhclient daemons, relays) goes with its netns.
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", name, check=False)


@contextmanager
def segment(area: str = "dhcp") -> Iterator[Segment]:
    seg = Segment(f"pv-{area}-{secrets.token_hex(3)}")
    try:
        yield seg
    finally:
        seg.cleanup()


def wait_line(proc: subprocess.Popen[str], want: str, timeout: float = 20) -> str:
    """Read proc's stdout until a line containing `want` (raises with stderr on failure)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if want in line:
                return line
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    msg = f"never saw {want!r}; rc={proc.poll()} stderr={err[-3000:]}"
    raise AssertionError(msg)


def start_server(
    seg: Segment,
    role: str,
    tmp: Path,
    settings: str,
    machines: list[dict[str, object]],
    *extra: str,
    name: str = "srv",
) -> subprocess.Popen[str]:
    """Run `python -m provisioner.dhcp` in namespace `role`; returns once it says READY."""
    cfg = tmp / f"{name}.toml"
    cfg.write_text(settings, encoding="utf-8")
    mfile = tmp / f"{name}-machines.json"
    mfile.write_text(json.dumps(machines), encoding="utf-8")
    proc = seg.spawn(
        role,
        [PYTHON, "-m", "provisioner.dhcp", str(cfg), str(mfile), *extra],
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wait_line(proc, "READY")
    return proc


def stop_server(proc: subprocess.Popen[str]) -> dict[str, int]:
    """SIGTERM, wait, return the counters it prints on the way out."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def python_in(seg: Segment, role: str, module: str, *args: str, timeout: float = 120) -> str:
    res = in_ns(seg.ns(role), PYTHON, "-m", module, *args, timeout=timeout)
    return res.stdout


__all__ = [
    "PYTHON",
    "REPO",
    "Segment",
    "in_ns",
    "python_in",
    "segment",
    "sh",
    "start_server",
    "stop_server",
    "sys",
    "wait_line",
]
