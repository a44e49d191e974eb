"""One running transfer inside the asyncio shell: its socket, its one timer, its backlog.

The protocol lives in `ReadTransfer`; a `Session` only moves its datagrams and arms its
timer. In the standard mode the session owns a socket connected to the client (its TID,
RFC 1350 §4), read with `loop.add_reader`; in single-port mode it has no socket and the
server feeds it from the listener and it sends through the listener.

The read path is kept flat on purpose: it runs once per block, and at ~10 µs of Python
per block every function call shows in MiB/s.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING

from provisioner.tftp.codec import RemoteProtocolError

if TYPE_CHECKING:
    import asyncio
    import socket
    from collections.abc import Callable

    from provisioner.tftp.files import OpenedFile
    from provisioner.tftp.transfer import Event, ReadTransfer

__all__ = ["Address", "Session"]

log = logging.getLogger(__name__)

Address = tuple[str, int]


class Session:
    """Drive one ReadTransfer over a connected socket (or the shared listener)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        addr: Address,
        *,
        machine: ReadTransfer,
        file: OpenedFile,
        sock: socket.socket | None,
        listener: socket.socket,
        counters: collections.Counter[str],
        on_end: Callable[[Session, Event], None],
    ) -> None:
        """Wire the pieces together; `start()` begins the transfer."""
        self.loop = loop
        self.addr = addr
        self.machine = machine
        self.file = file
        self.sock = sock
        self.started = loop.time()
        self._listener = listener
        self._counters = counters
        self._on_end = on_end
        self._timer: asyncio.TimerHandle | None = None
        self._pending: collections.deque[bytes] = collections.deque()
        self.ended = False

    def start(self) -> None:
        """Send the OACK or DATA 1 and start listening on the transfer socket."""
        if self.sock is not None:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self.flush()

    # -- in -------------------------------------------------------------------------

    def _on_readable(self) -> None:
        # One datagram per wake-up: in lockstep exactly one ACK is waiting, and a second
        # recv() would only cost a syscall and a BlockingIOError.
        sock = self.sock
        if sock is None:  # pragma: no cover - the reader goes with the socket
            return
        try:
            data = sock.recv(1024)
        except BlockingIOError:
            return
        except OSError as exc:  # ECONNREFUSED: ICMP port unreachable, the client is gone
            self.fail(f"unreachable: {exc}")
            return
        self._counters["received"] += 1
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """One datagram from the client's TID; garbage is counted and dropped."""
        try:
            self.machine.receive_datagram(data, self.loop.time())
        except RemoteProtocolError as exc:
            self._counters["malformed"] += 1
            log.debug("tftp %s: dropped garbage: %s", self.addr[0], exc)
            return
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        if not self.ended:
            self.machine.handle_timer(self.loop.time())
            self.flush()

    # -- out ------------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the machine queued, end on its event, otherwise re-arm the timer."""
        machine = self.machine
        out = machine.datagrams_to_send()
        if out:
            self._send(out)
        event = machine.next_event()
        if event is not None:
            self.close()
            self._on_end(self, event)
            return
        deadline = machine.get_timer()
        if deadline is None:
            return
        # One timer per transfer, re-armed lazily: a deadline that moves later (every
        # ACK) leaves the handle alone; when it fires early, `_on_timer` re-arms it.
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _send(self, out: list[bytes]) -> None:
        if self._pending:
            self._pending.extend(out)
            return
        sock, addr = self.sock, self.addr
        sent = 0
        try:
            if sock is not None:
                for packet in out:
                    sock.send(packet)
                    sent += 1
            else:
                sendto = self._listener.sendto
                for packet in out:
                    sendto(packet, addr)
                    sent += 1
        except BlockingIOError:
            # The socket buffer is full (a large window): keep the rest, send on writable.
            self._counters["send_backlog"] += 1
            self._pending.extend(out[sent:])
            self.loop.add_writer(self._fd(), self._drain_pending)
        except OSError as exc:
            self._counters["socket_errors"] += 1
            log.debug("tftp %s: send failed: %s", addr[0], exc)
        self._counters["datagrams_sent"] += sent

    def _drain_pending(self) -> None:
        while self._pending:
            packet = self._pending[0]
            try:
                if self.sock is not None:
                    self.sock.send(packet)
                else:
                    self._listener.sendto(packet, self.addr)
            except BlockingIOError:
                return
            except OSError:
                self._pending.clear()
                break
            self._pending.popleft()
            self._counters["datagrams_sent"] += 1
        self.loop.remove_writer(self._fd())

    def _fd(self) -> int:
        return (self.sock or self._listener).fileno()

    # -- end ------------------------------------------------------------------------

    def abort(self, message: str) -> None:
        """End from our side: the client gets ERROR 0 with `message`."""
        self.machine.abort(message)
        self.flush()

    def fail(self, reason: str) -> None:
        """End because the socket is unusable: nothing more is sent."""
        self.machine.abort(reason)
        self.machine.datagrams_to_send()
        self.flush()

    def close(self) -> None:
        """Release the timer, the socket and the file (idempotent)."""
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
        if self._pending:
            self._pending.clear()
            self.loop.remove_writer(self._fd())
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        self.file.close()
