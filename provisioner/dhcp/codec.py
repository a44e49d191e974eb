"""Sans-I/O DHCPv4 codec: bytes <-> `DhcpPacket` (RFC 951, RFC 2131, RFC 2132, RFC 3396).

Theory of operation
-------------------
`parse(data)` either returns a `DhcpPacket` or raises `RemoteProtocolError`; no other
exception leaves it, whatever the input (a hypothesis test feeds it arbitrary bytes).
Every length is checked against the buffer before it is used:

- the fixed BOOTP header is 236 bytes (RFC 2131 §2); `hlen` above 16 is refused (docs/threats.md A7);
- options follow the magic cookie (RFC 2131 §3) as code/length/value triples; a length
  running past the buffer (A1) or a missing END is refused;
- option 52 (overload, RFC 2132 §9.3) may move further options into `file` (1), `sname`
  (2) or both (3); any other value is refused (A9). Those fields are read with the same
  bounds checks, in the order options, file, sname (RFC 2131 §4.1);
- a code seen twice is concatenated (RFC 3396 §7), which is also how long options arrive.

`build(packet, limit)` encodes a reply. Options are written in the order given, each
longer than 255 bytes split per RFC 3396, followed by END and padded to the BOOTP
minimum of 300 bytes (RFC 1542 §3.2.1). An option that would push the message past
`limit` is left out, never truncated, so a reply never exceeds the size the client can
take (A6, A10); options 53 and 54 come first and always fit.

Addresses are dotted strings: policy code compares and stores them as such.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from provisioner.dhcp.options import (
    BOOTP_HEADER_LEN,
    MAGIC_COOKIE,
    MAX_UDP_PAYLOAD,
    MIN_MESSAGE_SIZE,
    Opt,
)

__all__ = [
    "DhcpPacket",
    "LocalProtocolError",
    "RemoteProtocolError",
    "build",
    "ip_to_bytes",
    "parse",
    "parse_suboptions",
    "swap_uuid",
]

BOOTREQUEST = 1
BOOTREPLY = 2
BROADCAST_FLAG = 0x8000  # RFC 2131 §2, figure 2
MAX_HLEN = 16
BOOTP_MIN_LEN = 300  # RFC 1542 §3.2.1: relays may drop shorter BOOTP messages

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_ZERO_IP = "0.0.0.0"


class RemoteProtocolError(ValueError):
    """The peer sent something that is not a valid DHCP packet."""


class LocalProtocolError(RuntimeError):
    """We tried to build something invalid: a bug on our side, never swallowed."""


def _ip(raw: bytes) -> str:
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def ip_to_bytes(text: str) -> bytes:
    """Dotted quad to 4 bytes; raises LocalProtocolError for anything else."""
    parts = text.split(".")
    try:
        values = bytes(int(p) for p in parts)
    except ValueError as exc:
        msg = f"not an IPv4 address: {text!r}"
        raise LocalProtocolError(msg) from exc
    if len(values) != 4:
        msg = f"not an IPv4 address: {text!r}"
        raise LocalProtocolError(msg)
    return values


def swap_uuid(guid: bytes) -> bytes:
    """Swap the first three UUID fields between little- and big-endian (SMBIOS 2.6 §7.2.1).

    Firmware sends option 97's GUID as SMBIOS stores it: time_low, time_mid and
    time_hi_and_version little-endian (docs/testing.md). The swap is its own inverse.
    """
    return guid[3::-1] + guid[5:3:-1] + guid[7:5:-1] + guid[8:]


@dataclass(frozen=True, slots=True)
class DhcpPacket:
    """One BOOTP/DHCP message. `options` maps code to raw value (concatenated per RFC 3396)."""

    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = _ZERO_IP
    yiaddr: str = _ZERO_IP
    siaddr: str = _ZERO_IP
    giaddr: str = _ZERO_IP
    chaddr: bytes = b"\x00" * 16
    sname: bytes = b""
    file: bytes = b""
    options: Mapping[int, bytes] = field(default_factory=dict)
    has_cookie: bool = True

    # -- typed views of the options; each returns None when absent or malformed --------

    @property
    def message_type(self) -> int | None:
        """Option 53 (RFC 2132 §9.6)."""
        raw = self.options.get(Opt.MESSAGE_TYPE)
        return raw[0] if raw is not None and len(raw) == 1 else None

    @property
    def mac(self) -> str | None:
        """The Ethernet chaddr as aa:bb:..., only for htype 1 / hlen 6 (docs/threats.md A7)."""
        if self.htype != 1 or self.hlen != 6:
            return None
        return self.chaddr[:6].hex(":")

    def _ip_option(self, code: int) -> str | None:
        raw = self.options.get(code)
        return _ip(raw) if raw is not None and len(raw) == 4 else None

    @property
    def requested_ip(self) -> str | None:
        """Option 50 (RFC 2132 §9.1)."""
        return self._ip_option(Opt.REQUESTED_IP)

    @property
    def server_id(self) -> str | None:
        """Option 54 (RFC 2132 §9.7)."""
        return self._ip_option(Opt.SERVER_ID)

    @property
    def client_id(self) -> bytes | None:
        """Option 61 (RFC 2132 §9.14); at least 2 bytes (type + one byte)."""
        raw = self.options.get(Opt.CLIENT_ID)
        return raw if raw is not None and len(raw) >= 2 else None

    @property
    def hostname(self) -> bytes | None:
        """Option 12 (RFC 2132 §3.14), at least one byte."""
        raw = self.options.get(Opt.HOSTNAME)
        return raw or None

    @property
    def param_request_list(self) -> bytes:
        """Option 55 (RFC 2132 §9.8) as raw codes; empty when absent."""
        return self.options.get(Opt.PARAM_REQUEST_LIST, b"")

    @property
    def max_message_size(self) -> int:
        """Option 57 clamped to [576, 1472]: never size a reply from a client value (A6)."""
        raw = self.options.get(Opt.MAX_MESSAGE_SIZE)
        if raw is None or len(raw) != 2:
            return MIN_MESSAGE_SIZE
        return min(max(int.from_bytes(raw, "big"), MIN_MESSAGE_SIZE), MAX_UDP_PAYLOAD)

    @property
    def vendor_class(self) -> bytes:
        """Option 60 (RFC 2132 §9.13); empty when absent."""
        return self.options.get(Opt.VENDOR_CLASS, b"")

    @property
    def user_classes(self) -> tuple[bytes, ...]:
        """Option 77: RFC 3004 length-prefixed instances, or iPXE's bare string."""
        raw = self.options.get(Opt.USER_CLASS)
        if not raw:
            return ()
        items: list[bytes] = []
        pos = 0
        while pos < len(raw):
            size = raw[pos]
            end = pos + 1 + size
            if size == 0 or end > len(raw):
                # Not RFC 3004 framing: iPXE (and others) send the class as plain text.
                return (raw,)
            items.append(raw[pos + 1 : end])
            pos = end
        return tuple(items)

    @property
    def client_arches(self) -> tuple[int, ...]:
        """Option 93 (RFC 4578 §2.1): a list of uint16 architecture types."""
        raw = self.options.get(Opt.CLIENT_ARCH)
        if not raw or len(raw) % 2:
            return ()
        return tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))

    @property
    def client_uuid(self) -> bytes | None:
        """Option 97 (RFC 4578 §2.3): type 0 then a 16-byte GUID, as sent (wire order)."""
        raw = self.options.get(Opt.CLIENT_UUID)
        if raw is None or len(raw) != 17 or raw[0] != 0:
            return None
        return raw[1:]

    @property
    def relay_info(self) -> bytes | None:
        """Option 82 (RFC 3046) raw, for echoing; sub-options checked for sane framing."""
        raw = self.options.get(Opt.RELAY_AGENT_INFO)
        if raw is None or parse_suboptions(raw) is None:
            return None
        return raw


def parse_suboptions(raw: bytes) -> dict[int, bytes] | None:
    """Split an encapsulated option (43, 82, 175) into sub-options; None if malformed."""
    result: dict[int, bytes] = {}
    pos = 0
    end = len(raw)
    while pos < end:
        code = raw[pos]
        if code == Opt.END:
            break
        if code == Opt.PAD:
            pos += 1
            continue
        if pos + 2 > end:
            return None
        size = raw[pos + 1]
        stop = pos + 2 + size
        if stop > end:
            return None  # docs/threats.md A11: sub-option length runs past the option
        result[code] = result.get(code, b"") + raw[pos + 2 : stop]
        pos = stop
    return result


def _parse_options(data: bytes, pos: int, end: int, into: dict[int, bytes], *, need_end: bool) -> None:
    while pos < end:
        code = data[pos]
        if code == Opt.END:
            return
        if code == Opt.PAD:
            pos += 1
            continue
        if pos + 2 > end:
            msg = f"option {code} has no length byte"
            raise RemoteProtocolError(msg)
        size = data[pos + 1]
        stop = pos + 2 + size
        if stop > end:
            # docs/threats.md A1: the classic TLV overflow (CVE-2014-7912/7913).
            msg = f"option {code} claims {size} bytes, {end - pos - 2} left"
            raise RemoteProtocolError(msg)
        value = data[pos + 2 : stop]
        old = into.get(code)
        into[code] = value if old is None else old + value  # RFC 3396 §7
        pos = stop
    if need_end:
        msg = "options do not end with END (255)"
        raise RemoteProtocolError(msg)


def parse(data: bytes) -> DhcpPacket:
    """Decode one datagram; raises RemoteProtocolError for anything malformed."""
    size = len(data)
    if size < BOOTP_HEADER_LEN:
        msg = f"{size} bytes is shorter than a BOOTP header"
        raise RemoteProtocolError(msg)
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = _HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        msg = f"op {op} is neither BOOTREQUEST nor BOOTREPLY"
        raise RemoteProtocolError(msg)
    if hlen > MAX_HLEN:
        msg = f"hlen {hlen} exceeds chaddr"
        raise RemoteProtocolError(msg)
    options: dict[int, bytes] = {}
    cookie = data[BOOTP_HEADER_LEN : BOOTP_HEADER_LEN + 4] == MAGIC_COOKIE
    if cookie:
        _parse_options(data, BOOTP_HEADER_LEN + 4, size, options, need_end=True)
        overload = options.get(Opt.OVERLOAD)
        if overload is not None:
            # RFC 2132 §9.3: only 1 (file), 2 (sname) and 3 (both) exist (docs/threats.md A9).
            if len(overload) != 1 or overload[0] not in (1, 2, 3):
                msg = f"bad option overload {overload.hex()}"
                raise RemoteProtocolError(msg)
            if overload[0] & 1:
                _parse_options(file, 0, len(file), options, need_end=False)
            if overload[0] & 2:
                _parse_options(sname, 0, len(sname), options, need_end=False)
    return DhcpPacket(
        op=op,
        htype=htype,
        hlen=hlen,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=_ip(ci),
        yiaddr=_ip(yi),
        siaddr=_ip(si),
        giaddr=_ip(gi),
        chaddr=chaddr,
        sname=sname,
        file=file,
        options=options,
        has_cookie=cookie,
    )


def _encode_option(code: int, value: bytes) -> bytes:
    if len(value) <= 255:  # the common case, kept cheap (hot path)
        return bytes((code, len(value))) + value
    # RFC 3396 §5: a value longer than 255 bytes is split into consecutive instances.
    return b"".join(
        bytes((code, len(chunk))) + chunk for chunk in (value[i : i + 255] for i in range(0, len(value), 255))
    )


def encode_options(options: Iterable[tuple[int, bytes]], limit: int) -> bytes:
    """Encode options in order plus END, skipping any that would exceed `limit` bytes."""
    parts: list[bytes] = []
    used = 1  # END
    for code, value in options:
        if code in (Opt.PAD, Opt.END):
            msg = f"option code {code} cannot carry a value"
            raise LocalProtocolError(msg)
        encoded = _encode_option(code, value)
        if used + len(encoded) > limit:
            continue  # leave it out whole: a truncated option is worse than none
        parts.append(encoded)
        used += len(encoded)
    parts.append(b"\xff")
    return b"".join(parts)


def build(
    packet: DhcpPacket,
    limit: int = MIN_MESSAGE_SIZE,
    options: Iterable[tuple[int, bytes]] | None = None,
) -> bytes:
    """Encode `packet`; `options` (ordered) overrides `packet.options` when given.

    `limit` is the largest datagram the receiver takes (option 57, clamped by the caller).
    """
    limit = max(limit, MIN_MESSAGE_SIZE)
    if not 0 <= packet.hlen <= MAX_HLEN:
        msg = f"hlen {packet.hlen}"
        raise LocalProtocolError(msg)
    try:
        header = _HEADER.pack(
            packet.op,
            packet.htype,
            packet.hlen,
            packet.hops,
            packet.xid,
            packet.secs,
            packet.flags,
            ip_to_bytes(packet.ciaddr),
            ip_to_bytes(packet.yiaddr),
            ip_to_bytes(packet.siaddr),
            ip_to_bytes(packet.giaddr),
            packet.chaddr.ljust(16, b"\x00")[:16],
            packet.sname.ljust(64, b"\x00")[:64],
            packet.file.ljust(128, b"\x00")[:128],
        )
    except struct.error as exc:
        msg = f"cannot encode header: {exc}"
        raise LocalProtocolError(msg) from exc
    if not packet.has_cookie:
        return header.ljust(BOOTP_MIN_LEN, b"\x00")
    items = packet.options.items() if options is None else options
    body = encode_options(items, limit - BOOTP_HEADER_LEN - len(MAGIC_COOKIE))
    return (header + MAGIC_COOKIE + body).ljust(BOOTP_MIN_LEN, b"\x00")
