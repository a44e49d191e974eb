"""``python -m lab.ra_daemon IFACE PREFIX``: send router advertisements on a lab bridge.

Runs inside the lab namespace (``ip netns exec``). Sends an RA every ``--interval``
seconds to ff02::1 and answers each Router Solicitation at once, so iPXE's IPv6
autoconfiguration finishes immediately instead of timing out. Errors while the bridge has
no carrier (no VM running) are expected and ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import signal
import socket
import sys
import time
from pathlib import Path

from lab.ra import is_router_solicit, router_advert

_ALL_NODES = "ff02::1"


def _open(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    index = socket.if_nametoindex(iface)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    return sock


def run(iface: str, prefix: str, interval: float) -> None:
    """Advertise ``prefix`` on ``iface`` until SIGTERM."""
    mac = Path(f"/sys/class/net/{iface}/address").read_text(encoding="ascii").strip()
    packet = router_advert(prefix, mac)
    sock = _open(iface)
    index = socket.if_nametoindex(iface)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    next_send = 0.0
    while True:
        now = time.monotonic()
        if now >= next_send:
            _send(sock, packet, index)
            next_send = now + interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - now))
        if ready:
            data = sock.recv(2048)
            if is_router_solicit(data):
                _send(sock, packet, index)


def _send(sock: socket.socket, packet: bytes, index: int) -> None:
    # No carrier yet (no tap open) fails with OSError: the next tick tries again.
    with contextlib.suppress(OSError):
        sock.sendto(packet, (_ALL_NODES, 0, 0, index))


def main() -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m lab.ra_daemon")
    parser.add_argument("iface")
    parser.add_argument("prefix")
    parser.add_argument("--interval", type=float, default=3.0)
    args = parser.parse_args()
    run(args.iface, args.prefix, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
