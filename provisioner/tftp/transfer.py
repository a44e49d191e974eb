"""One TFTP read transfer as a sans-I/O state machine.

Theory of operation
-------------------
The shell accepted an RRQ, opened the file and negotiated options (options.py). From
then on this object owns the transfer: bytes in (`receive_datagram(data, now)`), bytes
out (`datagrams_to_send()`), one deadline (`get_timer()` / `handle_timer(now)`), and
frozen events out (`next_event()`). It never touches a socket or a clock.

Rule 1: everything that changes the state goes through `_TRANSITIONS`, a table of
(state, trigger) -> next state. A pair missing from the table is our bug
(`LocalProtocolError`), never the peer's.

Rule 2: block numbers are tracked as absolute integers (`_acked`, `_sent`); only the wire
sees them modulo 2**16. After block 65535 comes block 0 (rollover for files larger than
65535 blocks, docs/threats.md B11; what tftp-hpa, curl, atftp and iPXE expect).

Rule 3 (RFC 7440 §4): the server sends a window of `windowsize` blocks and waits. An ACK
for block k inside the window sent means "everything up to k arrived": the next window
starts at k+1, even when k is short of the window's end (the client saw a gap). Lockstep
RFC 1350 is the case windowsize = 1.

Rule 4 (RFC 1123 §4.2.3.1, Sorcerer's Apprentice): an ACK that does not move `_acked`
forward (a duplicate, an old block, a block we have not sent yet) is dropped and sends
nothing. Only the timer retransmits.

Rule 5: the timer retransmits the outstanding window (or the OACK), doubling its
interval up to `_BACKOFF_CAP` times the server's `timeout_s` (or the client's `timeout`
option if that is longer) (RFC 1123 §4.2.3.2 asks for adaptive timeouts; exponential
backoff is the usual reading). After `retries` timeouts in a row
the transfer fails with an event and sends nothing more (a spoofed RRQ costs at most
1 + retries windows, docs/threats.md B9).

Rule 5a (issue 14): until the client has acknowledged the first block (ACK 0 of the
OACK, or ACK 1), the transfer retransmits at most `FIRST_BLOCK_RETRIES` times at the
server's own `timeout_s`, without backoff and ignoring the client's `timeout` option.
A client that just sent the RRQ answers within one round trip; a request that is never
acknowledged is most likely spoofed (THREATS B9/B10), and it must not hold a transfer
slot for the ~40 s of the full backoff (1+2+4+8+8+8+8 s at the defaults). RFC 1350 §2
only asks that a lost packet be retransmitted and RFC 2349's timeout is the client's
wish for a transfer in progress; two retransmissions still cover one lost OACK/DATA 1
and one lost ACK, so a real client is not cut off: it gives up after 3 x timeout_s (3 s
by default). A real client whose slot was released simply sends its RRQ again.

Rule 6: an ERROR from the client ends the transfer at once, without an answer (RFC 1350
§7: errors are not acknowledged). Garbage raises `RemoteProtocolError` to the shell,
which drops it; the transfer goes on.

States:  WAIT_OACK_ACK --ack 0--> SENDING --final ack--> DONE
         any live state --retries exhausted / client ERROR / abort--> FAILED
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from provisioner.tftp.codec import (
    Ack,
    ErrorCode,
    ErrorPacket,
    LocalProtocolError,
    Opcode,
    build_error,
    build_oack,
    parse_packet,
)

if TYPE_CHECKING:
    from provisioner.tftp.options import Negotiated

__all__ = [
    "FIRST_BLOCK_RETRIES",
    "Buffer",
    "Event",
    "ReadTransfer",
    "State",
    "TransferComplete",
    "TransferFailed",
]

_BACKOFF_CAP = 8  # longest interval = 8 x the server's timeout_s
FIRST_BLOCK_RETRIES = 2  # Rule 5a: retransmissions of an unacknowledged OACK / DATA 1
_DATA_HEADER = struct.Struct("!HH")
_DATA = int(Opcode.DATA)  # plain ints on the per-block path: no enum attribute lookups
_ACK = int(Opcode.ACK)


class Buffer(Protocol):
    """What the machine reads blocks from: `bytes` and `mmap.mmap` qualify."""

    def __len__(self) -> int:
        """Total length in bytes."""
        ...

    def __getitem__(self, key: slice, /) -> bytes:
        """A copy of the bytes in `key`."""
        ...


class State(enum.Enum):
    """Where a transfer is; see the module docstring."""

    # Enum's own __hash__ is Python code (hash of the name); members are singletons
    # compared by identity, so the C identity hash is equivalent and keeps the
    # per-ACK `_TRANSITIONS` lookup off the interpreter (~0.3 us per block).
    __hash__ = object.__hash__

    WAIT_OACK_ACK = "wait_oack_ack"
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"


class _Trigger(enum.Enum):
    __hash__ = object.__hash__  # as State.__hash__

    OACK_ACKED = enum.auto()
    ACK_PROGRESS = enum.auto()
    ACK_FINAL = enum.auto()
    TIMEOUT_RETRY = enum.auto()
    RETRIES_EXHAUSTED = enum.auto()
    PEER_ERROR = enum.auto()
    ABORT = enum.auto()


_TRANSITIONS: dict[tuple[State, _Trigger], State] = {
    (State.WAIT_OACK_ACK, _Trigger.OACK_ACKED): State.SENDING,
    (State.WAIT_OACK_ACK, _Trigger.TIMEOUT_RETRY): State.WAIT_OACK_ACK,
    (State.WAIT_OACK_ACK, _Trigger.RETRIES_EXHAUSTED): State.FAILED,
    (State.WAIT_OACK_ACK, _Trigger.PEER_ERROR): State.FAILED,
    (State.WAIT_OACK_ACK, _Trigger.ABORT): State.FAILED,
    (State.SENDING, _Trigger.ACK_PROGRESS): State.SENDING,
    (State.SENDING, _Trigger.ACK_FINAL): State.DONE,
    (State.SENDING, _Trigger.TIMEOUT_RETRY): State.SENDING,
    (State.SENDING, _Trigger.RETRIES_EXHAUSTED): State.FAILED,
    (State.SENDING, _Trigger.PEER_ERROR): State.FAILED,
    (State.SENDING, _Trigger.ABORT): State.FAILED,
}


@dataclass(frozen=True, slots=True)
class TransferComplete:
    """The client acknowledged the last block."""

    bytes_sent: int
    blocks: int
    retransmits: int


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """The transfer ended early: `outcome` is "timeout", "probe", "client_error" or "aborted".

    "probe": the client stopped with an ERROR right after the OACK, the way PXE firmware
    asks for the file size (tsize) before downloading.
    """

    outcome: str
    reason: str
    bytes_acked: int
    retransmits: int


Event = TransferComplete | TransferFailed


class ReadTransfer:
    """Serve `source` to one client with the negotiated parameters (see module doc)."""

    def __init__(
        self,
        source: Buffer,
        negotiated: Negotiated,
        *,
        now: float,
        timeout_s: float,
        retries: int,
        first_block_retries: int = FIRST_BLOCK_RETRIES,
    ) -> None:
        """Start the transfer at `now`: queue the OACK, or DATA 1 when there is none."""
        self._source = source
        self._size = len(source)
        self._block_size = negotiated.block_size
        self._window = negotiated.window_size
        # RFC 1350 §6: the last DATA is shorter than blksize, so a file that is an exact
        # multiple of blksize (0 B included) ends with an empty block.
        self._total = self._size // self._block_size + 1
        self._base_timeout = negotiated.timeout_s or timeout_s
        # Rule 5a: our own timeout until the client has acknowledged anything.
        self._interval = timeout_s
        self.acknowledged = False
        """True once the client acknowledged the first block (it is really there)."""
        self._max_interval = max(self._base_timeout, timeout_s * _BACKOFF_CAP)
        self._max_retries = retries
        self._first_retries = min(retries, first_block_retries)
        self._tries = 0
        self._acked = 0  # highest block the client confirmed
        self._sent = 0  # highest block sent so far
        self._oack = negotiated.oack
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self.retransmits = 0
        self.ended = False
        """True once the transfer is over (DONE or FAILED) and its event is queued."""
        self.state = State.WAIT_OACK_ACK
        if self._oack:
            # RFC 2347 §3: the OACK replaces DATA 1; the client answers with ACK 0.
            self._out.append(build_oack(self._oack))
        else:
            # RFC 2347 §4: no option accepted, no OACK: start as RFC 1350 with DATA 1.
            self._transition(_Trigger.OACK_ACKED)
            self._send_window()
        self._deadline: float | None = now + self._interval

    # -- inputs ---------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Feed one datagram from the client's TID; raise RemoteProtocolError on garbage."""
        if self.ended:
            return
        # Fast path for the one packet that matters: a 4-byte ACK (RFC 1350 §5).
        if len(data) == 4 and data[0] == 0 and data[1] == _ACK:
            self._on_ack((data[2] << 8) | data[3], now)
            return
        packet = parse_packet(data)
        if isinstance(packet, ErrorPacket):
            # PXE firmware (edk2 among others) sends an RRQ with tsize, reads the size
            # from the OACK and aborts with ERROR 8 before the real download: a probe,
            # not a failure. An ERROR after data has flowed is the client giving up.
            probe = self.state is State.WAIT_OACK_ACK
            self._fail(
                _Trigger.PEER_ERROR,
                "probe" if probe else "client_error",
                f"client sent ERROR {packet.code}: {packet.message}",
            )
        elif isinstance(packet, Ack):  # pragma: no cover - the fast path takes every ACK
            self._on_ack(packet.block, now)
        # DATA, OACK or a request on a transfer TID: not ours to answer; drop it.

    def handle_timer(self, now: float) -> None:
        """Retransmit or give up if the deadline has passed; otherwise do nothing."""
        if self._deadline is None or now < self._deadline:
            return
        self._tries += 1
        limit = self._max_retries if self.acknowledged else self._first_retries
        if self._tries > limit:
            what = "no answer" if self.acknowledged else "first block never acknowledged"
            self._fail(_Trigger.RETRIES_EXHAUSTED, "timeout", f"{what} after {limit} retransmissions")
            return
        self._transition(_Trigger.TIMEOUT_RETRY)
        if self.acknowledged:
            self._interval = min(self._interval * 2, self._max_interval)
        if self.state is State.WAIT_OACK_ACK:
            self._out.append(build_oack(self._oack))
            self.retransmits += 1
        else:
            first = self._acked + 1
            self._sent = self._acked
            self._send_window()
            self.retransmits += self._sent - first + 1
        self._deadline = now + self._interval

    def abort(self, message: str) -> None:
        """End the transfer from our side (shutdown): tell the client with ERROR 0."""
        if self.state in (State.DONE, State.FAILED):
            return
        self._out.append(build_error(ErrorCode.NOT_DEFINED, message))
        self._fail(_Trigger.ABORT, "aborted", message)

    # -- outputs --------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        """Datagrams to send to the client, in order; the list is handed over."""
        out = self._out
        if out:
            self._out = []
        return out

    def get_timer(self) -> float | None:
        """When `handle_timer` must next be called, or None once the transfer is over."""
        return self._deadline

    def next_event(self) -> Event | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    @property
    def block_size(self) -> int:
        """The negotiated block size."""
        return self._block_size

    @property
    def window_size(self) -> int:
        """The negotiated window size."""
        return self._window

    @property
    def bytes_acked(self) -> int:
        """File bytes the client has confirmed so far."""
        return min(self._acked * self._block_size, self._size)

    # -- internals ------------------------------------------------------------------

    def _transition(self, trigger: _Trigger) -> None:
        try:
            self.state = _TRANSITIONS[self.state, trigger]
        except KeyError:
            msg = f"no transition from {self.state} on {trigger}"
            raise LocalProtocolError(msg) from None

    def _on_ack(self, block: int, now: float) -> None:
        if self.state is State.WAIT_OACK_ACK:
            if block != 0:
                return  # docs/threats.md B8: an ACK other than 0 before the OACK is acknowledged
            self._transition(_Trigger.OACK_ACKED)
            self._progress(now)
            return
        # Map the 16-bit number onto the outstanding window (Rule 2). The window is at
        # most 65535 blocks, so the mapping is unambiguous.
        delta = (block - self._acked) & 0xFFFF
        if delta == 0 or delta > self._sent - self._acked:
            return  # Rule 4: duplicate, stale or not yet sent: no reaction at all
        self._acked += delta
        if self._acked >= self._total:
            self._transition(_Trigger.ACK_FINAL)
            self._deadline = None
            self.ended = True
            self._events.append(TransferComplete(self._size, self._total, self.retransmits))
            return
        self._transition(_Trigger.ACK_PROGRESS)
        self._progress(now)

    def _progress(self, now: float) -> None:
        """The client moved forward: reset the backoff and send the next window."""
        self.acknowledged = True
        self._tries = 0
        self._interval = self._base_timeout
        self._deadline = now + self._interval
        self._sent = self._acked
        self._send_window()

    def _send_window(self) -> None:
        source = self._source
        size = self._block_size
        pack = _DATA_HEADER.pack
        append = self._out.append
        block = self._sent + 1
        last = min(self._acked + self._window, self._total)
        offset = (block - 1) * size
        while block <= last:
            append(pack(_DATA, block & 0xFFFF) + source[offset : offset + size])
            offset += size
            block += 1
        self._sent = last

    def _fail(self, trigger: _Trigger, outcome: str, reason: str) -> None:
        self._transition(trigger)
        self._deadline = None
        self.ended = True
        self._events.append(TransferFailed(outcome, reason, self.bytes_acked, self.retransmits))
