"""TFTP option negotiation (RFC 2347) for a read request: pure policy, no I/O.

What we accept, and why:

- `blksize` (RFC 2348 §2): 8..65464 octets. Values outside that range are ignored as if
  never sent (docs/threats.md B5); values above what we allow are clamped to our limit, which the
  shell computes from the path MTU and the `block_size_max` setting (docs/threats.md B6). RFC 2348
  lets the server answer with a smaller value than asked, never a larger one.
- `timeout` (RFC 2349 §2): whole seconds; echoed unchanged and used as the base of our
  retransmission timer. RFC 2349 allows 1..255, but we decline values above
  `TIMEOUT_OPTION_MAX`: a client that asks for 255 s and then goes silent would hold a
  transfer slot for half an hour (docs/threats.md B10). Declined or out of range: ignored.
- `tsize` (RFC 2349 §4): in an RRQ the client sends 0 and the server answers with the
  file size. A value that is not a decimal number is ignored.
- `windowsize` (RFC 7440 §3): 1..65535 blocks, clamped to `window_size_max`.

Unknown options are ignored (RFC 2347 §4). When nothing is accepted there is no OACK and
the transfer starts with DATA 1, as in RFC 1350 (RFC 2347 §4, last paragraph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.tftp.codec import Request

__all__ = [
    "BLKSIZE_MAX",
    "BLKSIZE_MIN",
    "DEFAULT_BLOCK_SIZE",
    "TIMEOUT_OPTION_MAX",
    "Negotiated",
    "negotiate",
]

BLKSIZE_MIN = 8  # RFC 2348 §2
BLKSIZE_MAX = 65464  # RFC 2348 §2
DEFAULT_BLOCK_SIZE = 512  # RFC 1350 §1
TIMEOUT_OPTION_MAX = 10
_TIMEOUT_RANGE = range(1, TIMEOUT_OPTION_MAX + 1)  # RFC 2349 §2 allows up to 255
_WINDOW_RANGE = range(1, 65536)  # RFC 7440 §3
_MAX_DIGITS = 12  # longer numbers are out of every range anyway; bounds int() work


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The parameters a transfer runs with, and the OACK that announces them."""

    block_size: int = DEFAULT_BLOCK_SIZE
    window_size: int = 1
    timeout_s: float | None = None
    """The client's `timeout` option, or None for the server's own setting."""
    oack: tuple[tuple[str, str], ...] = ()
    """Options to acknowledge, in the client's order; empty means no OACK."""


def _number(value: str) -> int | None:
    """A plain decimal number, or None ("-1", "abc", "", "1e3", " 5" are not)."""
    if not value or len(value) > _MAX_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def negotiate(
    request: Request,
    *,
    file_size: int,
    max_block_size: int,
    max_window_size: int,
) -> Negotiated:
    """Decide which of the client's options we take, and with which values."""
    block_size = DEFAULT_BLOCK_SIZE
    window_size = 1
    timeout: float | None = None
    oack: list[tuple[str, str]] = []
    for name, raw in request.options:
        value = _number(raw)
        if value is None:
            continue
        if name == "blksize" and BLKSIZE_MIN <= value <= BLKSIZE_MAX:
            block_size = max(BLKSIZE_MIN, min(value, max_block_size))
            oack.append((name, str(block_size)))
        elif name == "windowsize" and value in _WINDOW_RANGE:
            window_size = max(1, min(value, max_window_size))
            oack.append((name, str(window_size)))
        elif name == "timeout" and value in _TIMEOUT_RANGE:
            timeout = float(value)
            oack.append((name, str(value)))
        elif name == "tsize":
            oack.append((name, str(file_size)))
    return Negotiated(block_size, window_size, timeout, tuple(oack))
