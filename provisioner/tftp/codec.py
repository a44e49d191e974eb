"""TFTP packet codec: parse and build, nothing else (no sockets, no clocks, no policy).

Packets (RFC 1350 §5, RFC 2347 §2/§3):

    RRQ/WRQ  | 01/02 | filename | 0 | mode | 0 | opt1 | 0 | value1 | 0 | ...
    DATA     | 03    | block (2) | payload (0..blksize)
    ACK      | 04    | block (2)
    ERROR    | 05    | code (2)  | message | 0
    OACK     | 06    | opt1 | 0 | value1 | 0 | ...

`parse_packet` raises `RemoteProtocolError` for anything that is not one of these; the
shells catch it, count it and drop the datagram. Parsing is
lenient where being strict would only help an attacker crash us and strict where it
matters for safety: a request must have its NUL terminators, an ERROR may lack its final
NUL (docs/threats.md B12), option names are case-insensitive (RFC 2347 §2) and a trailing option
name without a value is ignored (docs/threats.md B5).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "MAX_ERROR_MESSAGE",
    "Ack",
    "Data",
    "ErrorCode",
    "ErrorPacket",
    "LocalProtocolError",
    "OAck",
    "Opcode",
    "Packet",
    "RemoteProtocolError",
    "Request",
    "build_ack",
    "build_data",
    "build_error",
    "build_oack",
    "build_request",
    "parse_packet",
    "to_netascii",
]

MAX_ERROR_MESSAGE = 200
"""ERROR texts we keep from a peer are cut to this many characters (docs/threats.md B12)."""

_MAX_OPTIONS = 64  # RFC 2347 sets no limit; edk2#9797 overflowed a counter at 255 (B5)

_HEADER = struct.Struct("!HH")
_OPCODE = struct.Struct("!H")


class RemoteProtocolError(Exception):
    """The peer sent bytes that are not a valid TFTP packet (log, count, drop)."""


class LocalProtocolError(Exception):
    """We tried to do something the protocol does not allow: a bug on our side."""


class Opcode(enum.IntEnum):
    """RFC 1350 §5 opcodes plus RFC 2347's OACK."""

    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(enum.IntEnum):
    """RFC 1350 appendix error codes plus RFC 2347's 8 (option negotiation refused)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


@dataclass(frozen=True, slots=True)
class Request:
    """An RRQ or WRQ. `options` keeps the first value of each lower-cased name, in order."""

    opcode: Opcode
    filename: str
    mode: str
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        """The value the client sent for option `name` (lower-case), or None."""
        for key, value in self.options:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Data:
    """A DATA block; `block` is the 16-bit wire number."""

    block: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    """An ACK; `block` is the 16-bit wire number."""

    block: int


@dataclass(frozen=True, slots=True)
class ErrorPacket:
    """An ERROR; `message` is decoded leniently and already cut to MAX_ERROR_MESSAGE."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class OAck:
    """An option acknowledgement (RFC 2347 §3)."""

    options: tuple[tuple[str, str], ...]


Packet = Request | Data | Ack | ErrorPacket | OAck


def _strings(body: bytes) -> list[bytes]:
    """Split NUL-terminated fields; the body must end in NUL (RFC 1350 §5)."""
    if not body.endswith(b"\x00"):
        msg = "request field without NUL terminator"
        raise RemoteProtocolError(msg)
    return body[:-1].split(b"\x00")


def _decode(raw: bytes, what: str) -> str:
    # RFC 1350 says netascii; we accept 8-bit bytes 1:1 and let the file policy refuse
    # anything odd, so no byte is lost or altered between the wire and the policy.
    text = raw.decode("latin-1")
    if not text.isprintable():
        msg = f"non-printable character in {what}"
        raise RemoteProtocolError(msg)
    return text


def _options(fields: list[bytes]) -> tuple[tuple[str, str], ...]:
    """Name/value pairs, names lower-cased, first occurrence wins, bounded count."""
    seen: dict[str, str] = {}
    # A dangling name without value (odd count) is ignored, not fatal (docs/threats.md B5).
    for index in range(0, len(fields) - 1, 2):
        if len(seen) >= _MAX_OPTIONS:
            break
        name = fields[index].decode("latin-1").lower()
        if name and name not in seen:
            seen[name] = fields[index + 1].decode("latin-1")
    return tuple(seen.items())


def _parse_request(opcode: int, data: bytes) -> Request:
    fields = _strings(data[2:])
    if len(fields) < 2:
        msg = "request without mode"
        raise RemoteProtocolError(msg)
    filename = _decode(fields[0], "filename")
    mode = _decode(fields[1], "mode").lower()  # RFC 1350 §5: any combination of case
    return Request(Opcode(opcode), filename, mode, _options(fields[2:]))


def _parse_error(data: bytes) -> ErrorPacket:
    text = data[4:].split(b"\x00", 1)[0][:MAX_ERROR_MESSAGE]
    # repr-style escaping so a hostile message cannot forge log lines (docs/threats.md A16).
    message = text.decode("latin-1").encode("unicode_escape").decode("ascii")
    return ErrorPacket(_HEADER.unpack_from(data)[1], message)


def parse_packet(data: bytes) -> Packet:
    """Parse one datagram; raise RemoteProtocolError if it is not a TFTP packet."""
    if len(data) < 2:
        msg = f"{len(data)}-byte datagram"
        raise RemoteProtocolError(msg)
    (opcode,) = _OPCODE.unpack_from(data)
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        return _parse_request(opcode, data)
    if opcode == Opcode.OACK:
        return OAck(_options(_strings(data[2:])))
    if opcode not in (Opcode.DATA, Opcode.ACK, Opcode.ERROR):
        msg = f"unknown opcode {opcode}"
        raise RemoteProtocolError(msg)
    if len(data) < 4 or (opcode == Opcode.ACK and len(data) != 4):
        msg = f"{Opcode(opcode).name} of {len(data)} bytes"
        raise RemoteProtocolError(msg)
    if opcode == Opcode.ACK:
        return Ack(_HEADER.unpack(data)[1])
    if opcode == Opcode.DATA:
        return Data(_HEADER.unpack_from(data)[1], data[4:])
    return _parse_error(data)


def _field(text: str) -> bytes:
    raw = text.encode("latin-1")
    if b"\x00" in raw:
        msg = f"NUL inside TFTP field {text!r}"
        raise LocalProtocolError(msg)
    return raw + b"\x00"


def build_request(
    opcode: Opcode, filename: str, mode: str = "octet", options: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """An RRQ or WRQ (used by tests and the bench client)."""
    if opcode not in (Opcode.RRQ, Opcode.WRQ):
        msg = f"{opcode!r} is not a request"
        raise LocalProtocolError(msg)
    body = b"".join(_field(name) + _field(value) for name, value in options)
    return _OPCODE.pack(opcode) + _field(filename) + _field(mode) + body


def build_data(block: int, payload: bytes) -> bytes:
    """A DATA packet; `block` is taken modulo 2**16 (RFC 1350 has no rollover rule)."""
    return _HEADER.pack(Opcode.DATA, block & 0xFFFF) + payload


def build_ack(block: int) -> bytes:
    """An ACK packet for 16-bit block number `block & 0xffff`."""
    return _HEADER.pack(Opcode.ACK, block & 0xFFFF)


def build_error(code: int, message: str) -> bytes:
    """An ERROR packet; non-ASCII text is replaced so the packet always encodes."""
    text = message.encode("ascii", "replace").replace(b"\x00", b"?")
    return _HEADER.pack(Opcode.ERROR, code) + text + b"\x00"


def build_oack(options: tuple[tuple[str, str], ...]) -> bytes:
    """An OACK packet (RFC 2347 §3)."""
    if not options:
        msg = "an OACK must carry at least one option"
        raise LocalProtocolError(msg)
    return _OPCODE.pack(Opcode.OACK) + b"".join(_field(n) + _field(v) for n, v in options)


def to_netascii(data: bytes) -> bytes:
    """Convert local text (LF line ends) to netascii (RFC 764 NVT, RFC 1350 §1).

    CR becomes CR NUL first, then LF becomes CR LF, so a bare CR in the file survives the
    client's reverse conversion.
    """
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")
