"""The asyncio shell's sockets: one UDP endpoint per interface and port.

Only moves bytes. Each socket is bound to its interface with SO_BINDTODEVICE so that
broadcast replies leave on the segment the request came from, and several sockets can
share port 67 (one per interface) with SO_REUSEADDR. A failing handler is logged and
counted; it never closes the endpoint (one bad packet never stops the loop).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable

__all__ = ["DhcpEndpoint", "interface_address", "open_udp_socket"]

log = logging.getLogger(__name__)

SIOCGIFADDR = 0x8915
RECEIVE_BUFFER = 4 * 1024 * 1024


def interface_address(name: str) -> str | None:
    """The IPv4 address of interface `name`, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            raw = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(raw[20:24])


def open_udp_socket(address: str, port: int, device: str | None) -> socket.socket:
    """A non-blocking UDP socket bound to `address:port`, pinned to `device` if given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RECEIVE_BUFFER)
        except OSError:  # pragma: no cover - kernel limits
            pass
        if device:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode() + b"\0")
        sock.bind((address, port))
        sock.setblocking(False)  # noqa: FBT003 - the socket API
    except BaseException:
        sock.close()
        raise
    return sock


Handler = Callable[["DhcpEndpoint", bytes, tuple[str, int]], None]
AfterBatch = Callable[["DhcpEndpoint"], None]
READ_BATCH = 64


class DhcpEndpoint:
    """One UDP socket on the event loop; hands each datagram to `handler`.

    Reads up to READ_BATCH datagrams per wake-up (asyncio's datagram transport reads one),
    then calls `after_batch` once: the shell sends the replies and submits the lease writes
    of the whole batch together, which also makes group commits larger under load. A bug
    in the handler is logged and counted for that datagram only.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        after_batch: AfterBatch,
        counters: Counter[str],
        *,
        proxy_port: bool,
    ) -> None:
        """`proxy_port`: this endpoint is the PXE boot-server port (4011)."""
        self.sock = sock
        self.handler = handler
        self.after_batch = after_batch
        self.counters = counters
        self.proxy_port = proxy_port
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the socket."""
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        """Stop watching and close the socket."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def _readable(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, addr = self.sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP errors surface here; count and carry on
                self.counters["socket_errors"] += 1
                log.debug("dhcp socket error: %r", exc)
                break
            try:
                self.handler(self, data, addr)
            except Exception:
                self.counters["dropped_handler_error"] += 1
                log.exception("dhcp handler failed on a datagram from %r", addr)
        try:
            self.after_batch(self)
        except Exception:
            self.counters["dropped_handler_error"] += 1
            log.exception("dhcp reply flush failed")

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send now; a full socket buffer drops the reply (the client retries)."""
        if self._loop is None:
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.counters["dropped_send_buffer_full"] += 1
        except OSError as exc:
            self.counters["socket_errors"] += 1
            log.debug("dhcp send to %r failed: %r", addr, exc)
