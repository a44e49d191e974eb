"""docs/benchmarks.md's topology, shared by the benchmarks: two namespaces joined by a veth pair.

Server 10.88.0.1/16, client 10.88.0.2/16; uniquely named and always removed.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping

SERVER_IP = "10.88.0.1"
CLIENT_IP = "10.88.0.2"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output."""
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def ensure_tools(tools: Mapping[str, str]) -> None:
    """apt-get install the Debian package of every tool (command -> package) not on PATH."""
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if missing:
        print(f"installing {' '.join(missing)}", flush=True)
        sh("apt-get", "install", "-y", "--no-install-recommends", *missing)


@contextlib.contextmanager
def namespaces(kind: str) -> Iterator[tuple[str, str]]:
    """Yield (server, client) namespace names; `kind` (a short word) tags the names."""
    tag = secrets.token_hex(3)
    srv, cli = f"pv-{kind}-{tag}-srv", f"pv-{kind}-{tag}-cli"
    vs, vc = f"pv{kind[0]}s{tag}", f"pv{kind[0]}c{tag}"
    try:
        sh("ip", "netns", "add", srv)
        sh("ip", "netns", "add", cli)
        sh("ip", "link", "add", vs, "type", "veth", "peer", "name", vc)
        sh("ip", "link", "set", vs, "netns", srv)
        sh("ip", "link", "set", vc, "netns", cli)
        for ns, dev, addr in ((srv, vs, SERVER_IP), (cli, vc, CLIENT_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/16", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield srv, cli
    finally:
        for ns in (srv, cli):
            sh("ip", "netns", "del", ns, check=False)
