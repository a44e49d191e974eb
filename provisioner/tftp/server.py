"""The TFTP transport: sockets, one timer per transfer, caps, counters and events.

This module only moves bytes and arms timers; every protocol decision is made in
`transfer.py` (per transfer), `options.py` (negotiation) and `files.py` (what may be
served). Sockets are non-blocking and driven with `loop.add_reader` rather than asyncio
datagram transports, so a block costs one recv(), one pass through the machine and one
send(), with no protocol-callback layer or transport buffer in between (lockstep TFTP is
bound by per-block latency; an asyncio datagram transport measured ~20 µs per datagram,
add_reader + recv ~4 µs; docs/tftp.md "Hot path").

Two modes:
- standard (RFC 1350 §4): the listener on port 69 takes requests; each transfer gets its
  own socket on a fresh port (its TID), connected to the client, so the kernel drops
  packets from any other address (docs/threats.md B8: nothing is sent to a wrong TID, no
  reflection).
- single port (`single_port = true`, for firewalls and NAT): everything runs over the
  listener and datagrams are demultiplexed by client address; packets from an address
  without a transfer that are not requests are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import socket
from typing import TYPE_CHECKING

from provisioner.events import Event, Severity, utcnow
from provisioner.startup import StartupError, os_problem
from provisioner.tftp.codec import (
    ErrorCode,
    Opcode,
    RemoteProtocolError,
    Request,
    build_error,
    parse_packet,
    to_netascii,
)
from provisioner.tftp.files import FileRefused
from provisioner.tftp.options import negotiate
from provisioner.tftp.session import Address, Session
from provisioner.tftp.transfer import ReadTransfer, TransferComplete

if TYPE_CHECKING:
    from collections.abc import Mapping

    from provisioner.events import EventSink
    from provisioner.settings import TftpSettings
    from provisioner.tftp.files import FileSource, OpenedFile
    from provisioner.tftp.transfer import Event as TransferEvent

__all__ = ["TftpServer"]

log = logging.getLogger(__name__)

NETASCII_MAX = 4 * 1024 * 1024  # netascii is converted in memory; binaries are octet
_IP_MTU = getattr(socket, "IP_MTU", 14)  # Linux getsockopt: the path MTU of a connected socket
_HEADERS = 20 + 8 + 4  # IPv4 + UDP + TFTP DATA header (RFC 2348 §2 example)
_LISTENER_RCVBUF = 4 * 1024 * 1024
_DRAIN = 64  # datagrams read per wake-up before yielding to the loop
# A full table evicts the oldest transfer whose first block was never acknowledged, if it
# is at least this old (issue 14). A real client ACKs within one round trip (well under
# a millisecond on a LAN, tens of ms through a relay), so members of a genuine boot storm
# are not evicted by each other; a spoofer must refill every slot faster than this
# (max_transfers / 0.2 s = 1000 RRQs/s at the defaults, from 50+ addresses) to hold it.
EVICT_AFTER_S = 0.2


def _clip(text: str, limit: int = 80) -> str:
    """A log- and event-safe rendering of a client-supplied string (docs/threats.md B4, A16)."""
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


def _grow_receive_buffer(sock: socket.socket) -> None:
    """A boot storm sends hundreds of RRQs at once; the default buffer holds ~200."""
    force = getattr(socket, "SO_RCVBUFFORCE", 33)  # root may exceed net.core.rmem_max
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, _LISTENER_RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _LISTENER_RCVBUF)


class TftpServer:
    """Serve `files` over TFTP as configured by `settings`; report through `events`."""

    def __init__(
        self,
        settings: TftpSettings,
        events: EventSink,
        files: FileSource,
        *,
        host: str | None = None,
    ) -> None:
        """Prepare the server; nothing is bound until `start()`."""
        self._settings = settings
        self._events = events
        self._files = files
        self._host = host if host is not None else str(settings.listen_address)
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[Address, Session] = {}
        self._per_client: collections.Counter[str] = collections.Counter()
        self._counters: collections.Counter[str] = collections.Counter()
        self._buffer = bytearray(65536)

    @property
    def port(self) -> int:
        """The bound listener port (the real one when the setting is 0)."""
        if self._listener is None:
            msg = "TftpServer is not started"
            raise RuntimeError(msg)
        return int(self._listener.getsockname()[1])

    def counters(self) -> Mapping[str, int]:
        """A snapshot of the plain counters (for /metrics)."""
        snapshot = dict(self._counters)
        snapshot["active_transfers"] = len(self._sessions)
        # Running sessions keep their per-block counts locally until they close.
        for session in self._sessions.values():
            for key, value in (("received", session.received), ("datagrams_sent", session.datagrams_sent)):
                if value:
                    snapshot[key] = snapshot.get(key, 0) + value
        return snapshot

    async def start(self) -> None:
        """Bind the listener and start answering."""
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.settimeout(0.0)  # non-blocking
            _grow_receive_buffer(sock)
            # No SO_REUSEADDR: on UDP it would let a second server share port 69 with us
            # and take some of our datagrams.
            sock.bind((self._host, self._settings.port))
        except OSError as exc:
            sock.close()
            setting = "tftp.listen_address" if exc.errno == errno.EADDRNOTAVAIL else "tftp.port"
            raise StartupError(setting, f"{self._host}:{self._settings.port}", os_problem(exc)) from exc
        self._listener = sock
        self._loop.add_reader(sock.fileno(), self._on_listener)
        log.info("tftp listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Abort running transfers (clients get ERROR 0), close every socket."""
        for session in list(self._sessions.values()):
            session.abort("server shutting down")
        if self._listener is not None and self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None

    # -- datagrams in ---------------------------------------------------------------

    def _on_listener(self) -> None:
        listener = self._listener
        if listener is None:  # pragma: no cover - reader removed with the socket
            return
        view = memoryview(self._buffer)
        for _ in range(_DRAIN):
            try:
                size, addr = listener.recvfrom_into(self._buffer)
            except BlockingIOError:
                return
            except OSError as exc:  # ICMP errors surface here in single-port mode
                self._counters["socket_errors"] += 1
                log.debug("tftp listener: %s", exc)
                continue
            self._counters["received"] += 1
            data = bytes(view[:size])
            session = self._sessions.get(addr)
            if session is not None and session.sock is None:
                session.feed(data)
            else:
                self._on_request(data, addr)

    # -- requests -------------------------------------------------------------------

    def _on_request(self, data: bytes, addr: Address) -> None:
        try:
            packet = parse_packet(data)
        except RemoteProtocolError as exc:
            self._counters["malformed"] += 1
            log.debug("tftp %s: malformed request: %s", addr[0], exc)
            return
        if not isinstance(packet, Request):
            # DATA/ACK/ERROR/OACK from an address without a transfer: a wrong TID or a
            # late packet. Answering would make us a reflector (docs/threats.md B8, B9).
            self._counters["dropped_no_transfer"] += 1
            return
        if addr in self._sessions:
            self._counters["duplicate_request"] += 1  # a retransmitted RRQ: already served
            return
        self._counters["requests"] += 1
        refusal = self._admit(packet, addr)
        if refusal is not None:
            self._refuse(addr, packet.filename, refusal)
            return
        opened = self._files.open(packet.filename, addr[0])
        if isinstance(opened, FileRefused):
            self._refuse(addr, packet.filename, opened)
            return
        self._begin(packet, addr, opened)

    def _admit(self, request: Request, addr: Address) -> FileRefused | None:
        if request.opcode == Opcode.WRQ:  # docs/threats.md B2: read-only, nothing is ever created
            return FileRefused(ErrorCode.ACCESS_VIOLATION, "Read-only server", "write_request")
        if request.mode not in ("octet", "netascii"):  # "mail" is obsolete (RFC 1350 §1)
            return FileRefused(ErrorCode.ILLEGAL_OPERATION, "Unsupported mode", "bad_mode")
        if self._per_client[addr[0]] >= self._settings.max_transfers_per_client:
            return FileRefused(ErrorCode.NOT_DEFINED, "Too many transfers", "client_busy")
        if len(self._sessions) >= self._settings.max_transfers and not self._evict_unacknowledged():
            return FileRefused(ErrorCode.NOT_DEFINED, "Server busy, retry later", "busy")
        return None

    def _evict_unacknowledged(self) -> bool:
        """End the oldest never-acknowledged transfer (older than EVICT_AFTER_S), if any."""
        if self._loop is None:  # pragma: no cover - only while running
            return False
        cutoff = self._loop.time() - EVICT_AFTER_S
        victim = min(
            (s for s in self._sessions.values() if not s.machine.acknowledged and s.started <= cutoff),
            key=lambda s: s.started,
            default=None,
        )
        if victim is None:
            return False
        self._counters["evicted_unacknowledged"] += 1
        victim.fail("evicted: table full and the first block was never acknowledged")
        return True

    def _refuse(self, addr: Address, filename: str, refusal: FileRefused) -> None:
        self._counters[f"refused_{refusal.reason}"] += 1
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.sendto(build_error(refusal.code, refusal.message), addr)
        self._emit(
            addr,
            filename,
            "refused",
            refusal.reason,
            severity=Severity.WARNING if refusal.suspicious else Severity.INFO,
        )

    def _begin(self, request: Request, addr: Address, opened: OpenedFile) -> None:
        loop = self._loop
        if loop is None or self._listener is None:  # pragma: no cover - only while running
            opened.close()
            return
        sock: socket.socket | None = None
        source = opened.data
        size = opened.size
        if request.mode == "netascii":
            if size > NETASCII_MAX:
                opened.close()
                refusal = FileRefused(ErrorCode.NOT_DEFINED, "Use octet mode", "netascii_size")
                self._refuse(addr, request.filename, refusal)
                return
            source = to_netascii(bytes(source[0:size]))
            size = len(source)
        try:
            if not self._settings.single_port:
                sock = self._transfer_socket(addr)
            mtu = self._path_mtu(addr, sock)
        except OSError as exc:
            opened.close()
            if sock is not None:
                sock.close()
            self._refuse(addr, request.filename, FileRefused(ErrorCode.NOT_DEFINED, "", "socket"))
            log.warning("tftp %s: cannot open a transfer socket: %s", addr[0], exc)
            return
        negotiated = negotiate(
            request,
            file_size=size,
            max_block_size=max(8, min(self._settings.block_size_max, mtu - _HEADERS)),
            max_window_size=self._settings.window_size_max,
        )
        machine = ReadTransfer(
            source,
            negotiated,
            now=loop.time(),
            timeout_s=self._settings.timeout_s,
            retries=self._settings.retries,
        )
        session = Session(
            loop,
            addr,
            machine=machine,
            file=opened,
            sock=sock,
            listener=self._listener,
            counters=self._counters,
            on_end=self._finish,
        )
        self._sessions[addr] = session
        self._per_client[addr[0]] += 1
        self._counters["transfers_started"] += 1
        session.start()

    def _transfer_socket(self, addr: Address) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.settimeout(0.0)  # non-blocking
            sock.bind(("" if self._host == "0.0.0.0" else self._host, 0))
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        return sock

    def _path_mtu(self, addr: Address, sock: socket.socket | None) -> int:
        """The route's MTU towards `addr` (RFC 2348 blksize must fit it, docs/threats.md B6)."""
        if sock is None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(addr)
                return int(probe.getsockopt(socket.IPPROTO_IP, _IP_MTU))
        return int(sock.getsockopt(socket.IPPROTO_IP, _IP_MTU))

    # -- endings -------------------------------------------------------------------

    def _finish(self, session: Session, event: TransferEvent) -> None:
        """Bookkeeping and the audit event; the session already closed its resources."""
        if self._sessions.get(session.addr) is not session:
            return
        del self._sessions[session.addr]
        client = session.addr[0]
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
        duration = session.loop.time() - session.started
        if isinstance(event, TransferComplete):
            outcome, reason, sent = "complete", "", event.bytes_sent
            self._counters["bytes_sent"] += sent
        else:
            outcome, reason, sent = event.outcome, event.reason, event.bytes_acked
        self._counters[f"transfers_{outcome}"] += 1
        self._emit(
            session.addr,
            session.file.name,
            outcome,
            reason,
            nbytes=sent,
            duration=duration,
            extra={
                "blksize": session.machine.block_size,
                "windowsize": session.machine.window_size,
                "retransmits": session.machine.retransmits,
            },
        )

    def _emit(
        self,
        addr: Address,
        filename: str,
        outcome: str,
        reason: str,
        *,
        nbytes: int = 0,
        duration: float = 0.0,
        severity: Severity = Severity.INFO,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        shown = _clip(filename)
        data: dict[str, object] = {
            "client": addr[0],
            "port": addr[1],
            "file": shown,
            "bytes": nbytes,
            "duration_s": round(duration, 6),
            "outcome": outcome,
            "reason": reason,
            **(extra or {}),
        }
        if outcome not in ("complete", "refused", "probe") and severity is Severity.INFO:
            severity = Severity.WARNING
        message = f"tftp {shown} to {addr[0]}: {outcome}" + (f" ({reason})" if reason else "")
        # Everything but a completed transfer can be caused by a spoofed or unanswered
        # request: grouped by client address, repeats are folded (issue 14).
        group = "" if outcome == "complete" else addr[0]
        self._events.emit(
            Event("tftp.transfer", utcnow(), severity=severity, message=message, data=data, group=group)
        )
