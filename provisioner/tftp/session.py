"""One running transfer inside the asyncio shell: its socket, its one timer, its backlog.

The protocol lives in `ReadTransfer`; a `Session` only moves its datagrams and arms its
timer. In the standard mode the session owns a socket connected to the client (its TID,
RFC 1350 §4), read with `loop.add_reader`; in single-port mode it has no socket and the
server feeds it from the listener and it sends through the listener.

The read path is kept flat on purpose: it runs once per block (lockstep TFTP is one round
trip per block), our Python on it is ~1.8 µs per ACK -> DATA and every call is 30-70 ns
of that (measured numbers and what was tried: docs/tftp.md, "Hot path").
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

_NEVER = float("inf")


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
        self._timer_at = _NEVER  # when self._timer fires; _NEVER without one
        self._pending: collections.deque[bytes] = collections.deque()
        self.ended = False
        # Per-block counts stay in plain ints (a Counter update is ~70 ns, twice per
        # block); `close()` folds them into the shared counters and the server adds the
        # live sessions' counts to its snapshot.
        self.received = 0
        self.datagrams_sent = 0
        # Bound once: the per-block path must not look these up for every ACK.
        self._time = loop.time
        self._recv = sock.recv if sock is not None else None
        self._send_connected = sock.send if sock is not None else None

    def start(self) -> None:
        """Send the OACK or DATA 1 and start listening on the transfer socket."""
        if self.sock is not None:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self.flush()

    # -- in -------------------------------------------------------------------------

    def _on_readable(self) -> None:
        # The lockstep hot path: one ACK in, one DATA out, once per block. It is written
        # flat (bound methods cached in __init__, the common single-datagram send
        # inline, the timer compared against a stored float) because every Python-level
        # call here costs ~30-70 ns on a path of ~2 us; measured numbers in docs/tftp.md.
        # One datagram per wake-up: in lockstep exactly one ACK is waiting, and a second
        # recv() would only cost a syscall and a BlockingIOError (~1 us).
        recv = self._recv
        if recv is None:  # pragma: no cover - single-port sessions have no reader
            return
        try:
            data = recv(1024)
        except BlockingIOError:
            return
        except OSError as exc:  # ECONNREFUSED: ICMP port unreachable, the client is gone
            self.fail(f"unreachable: {exc}")
            return
        self.received += 1
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """One datagram from the client's TID; garbage is counted and dropped."""
        machine = self.machine
        try:
            machine.receive_datagram(data, self._time())
        except RemoteProtocolError as exc:
            self._counters["malformed"] += 1
            log.debug("tftp %s: dropped garbage: %s", self.addr[0], exc)
            return
        out = machine.datagrams_to_send()
        if machine.ended:
            if out:
                self._send(out)
            self._end()
            return
        # Bookkeeping first, the send last: once the DATA is out, the client runs, and
        # a short tail before we sleep again leaves it the CPU sooner.
        deadline = machine.get_timer()
        if deadline is not None and deadline < self._timer_at:
            self._arm(deadline)
        if not out:
            return
        send = self._send_connected
        if send is not None and len(out) == 1 and not self._pending:
            self.datagrams_sent += 1
            try:
                send(out[0])
            except OSError:
                self.datagrams_sent -= 1
                self._send(out)  # EAGAIN or an error: the general path decides
        else:
            self._send(out)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = _NEVER
        if not self.ended:
            self.machine.handle_timer(self._time())
            self.flush()

    # -- out ------------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the machine queued, end on its event, otherwise re-arm the timer."""
        machine = self.machine
        out = machine.datagrams_to_send()
        if out:
            self._send(out)
        if machine.ended:
            self._end()
            return
        deadline = machine.get_timer()
        if deadline is not None and deadline < self._timer_at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        # One timer per transfer (a loop.call_at handle, not a task), re-armed lazily: a
        # deadline that moves later (every ACK) leaves the handle alone; when it fires
        # early, `_on_timer` sees the deadline has not passed and re-arms it.
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    def _end(self) -> None:
        event = self.machine.next_event()
        if event is not None:
            self.close()
            self._on_end(self, event)

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
        self.datagrams_sent += sent

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
            self.datagrams_sent += 1
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
        self._counters["received"] += self.received
        self._counters["datagrams_sent"] += self.datagrams_sent
        self.received = self.datagrams_sent = 0
        if self._timer is not None:
            self._timer.cancel()
        if self._pending:
            self._pending.clear()
            self.loop.remove_writer(self._fd())
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        self.file.close()
