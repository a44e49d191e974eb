"""Client-side packets for tests, built with scapy (the oracle), never with our codec."""

from __future__ import annotations

import uuid as uuid_mod
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.packet import raw

IPXE_BIOS = {"arch": 0, "vendor": b"PXEClient:Arch:00000:UNDI:002001", "user": b"iPXE"}
OVMF = {"arch": 7, "vendor": b"PXEClient:Arch:00007:UNDI:003000"}


def mac_bytes(mac: str) -> bytes:
    """aa:bb:.. -> 6 bytes."""
    return bytes.fromhex(mac.replace(":", ""))


def option97(text: str) -> bytes:
    """Option 97 as firmware sends it: type 0, GUID with the first three fields little-endian."""
    return b"\x00" + uuid_mod.UUID(text).bytes_le


def client_packet(
    mtype: str,
    mac: str,
    *,
    xid: int = 0x1234,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    requested: str | None = None,
    server_id: str | None = None,
    arch: int | None = None,
    vendor: bytes | None = None,
    user: bytes | None = None,
    uuid: str | None = None,
    client_id: bytes | None = None,
    extra: list[Any] | None = None,
    flags: int = 0,
) -> bytes:
    """One BOOTREQUEST of type `mtype` ("discover", "request", ...)."""
    opts: list[Any] = [("message-type", mtype)]
    if requested:
        opts.append(("requested_addr", requested))
    if server_id:
        opts.append(("server_id", server_id))
    if arch is not None:
        opts.append((93, arch.to_bytes(2, "big")))
    if vendor is not None:
        opts.append(("vendor_class_id", vendor))
    if user is not None:
        opts.append((77, user))
    if uuid is not None:
        opts.append((97, option97(uuid)))
    if client_id is not None:
        opts.append(("client_id", client_id))
    opts.extend(extra or [])
    opts.append(("param_req_list", [1, 3, 6, 12, 15, 28, 51, 66, 67]))
    pkt = BOOTP(op=1, xid=xid, ciaddr=ciaddr, giaddr=giaddr, chaddr=mac_bytes(mac), flags=flags)
    return raw(pkt / DHCP(options=[*opts, "end"]))


def reply_options(data: bytes) -> tuple[BOOTP, dict[str, Any]]:
    """Parse a reply with scapy: the BOOTP layer and its options by name."""
    pkt = BOOTP(data)
    opts: dict[str, Any] = {}
    for opt in pkt[DHCP].options:
        if isinstance(opt, tuple):
            opts[opt[0]] = opt[1] if len(opt) == 2 else opt[1:]
    return pkt, opts


def base_packet(options: bytes, *, mtype: bytes = b"\x35\x01\x01", end: bool = True) -> bytes:
    """The base packet of the threat tests: a minimal BOOTREQUEST built with struct, then `options`."""
    import struct

    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        0xBADC0DE,
        0,
        0,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        bytes.fromhex("02aabbccddee") + b"\0" * 10,
        b"\0" * 64,
        b"\0" * 128,
    )
    return head + b"\x63\x82\x53\x63" + mtype + options + (b"\xff" if end else b"")
