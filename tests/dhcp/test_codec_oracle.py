"""Our codec against scapy, field by field, both ways (hypothesis-generated packets)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.packet import Raw, raw

from provisioner.dhcp.codec import (
    DhcpPacket,
    RemoteProtocolError,
    build,
    encode_options,
    parse,
    parse_suboptions,
    swap_uuid,
)

ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
# Codes scapy keeps as raw bytes or as simple values we can re-encode exactly.
RAW_CODES = [43, 60, 61, 77, 82, 93, 94, 97, 175, 12, 15, 66, 67, 200, 224]
option_values = st.dictionaries(st.sampled_from(RAW_CODES), st.binary(min_size=1, max_size=60), max_size=8)

headers = st.fixed_dictionaries(
    {
        "op": st.sampled_from([1, 2]),
        "htype": st.integers(0, 255),
        "hlen": st.integers(0, 16),
        "hops": st.integers(0, 255),
        "xid": st.integers(0, 2**32 - 1),
        "secs": st.integers(0, 2**16 - 1),
        "flags": st.integers(0, 2**16 - 1),
        "ciaddr": ips,
        "yiaddr": ips,
        "siaddr": ips,
        "giaddr": ips,
        "chaddr": st.binary(min_size=16, max_size=16),
        "sname": st.binary(min_size=64, max_size=64),
        "file": st.binary(min_size=128, max_size=128),
    }
)


def scapy_options(pkt: BOOTP) -> dict[int, bytes]:
    """Scapy's parsed options re-encoded one by one to (code -> raw value)."""
    out: dict[int, bytes] = {}
    for opt in pkt[DHCP].options:
        if opt in ("end", "pad"):
            continue
        encoded = raw(DHCP(options=[opt]))
        out[encoded[0]] = encoded[2 : 2 + encoded[1]]
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(headers, option_values, st.integers(1, 8))
def test_scapy_built_packets_parse_the_same(
    header: dict[str, object], options: dict[int, bytes], mtype: int
) -> None:
    """scapy builds -> our parser reads the same fields and options."""
    opts = [("message-type", mtype), *list(options.items())]
    pkt = BOOTP(**header) / DHCP(options=[*opts, "end"])
    data = raw(pkt)
    ours = parse(data)
    for name, value in header.items():
        assert getattr(ours, name) == value, name
    assert ours.message_type == mtype
    assert {k: v for k, v in ours.options.items() if k != 53} == options


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(headers, option_values, st.integers(1, 8))
def test_our_built_packets_parse_the_same_in_scapy(
    header: dict[str, object], options: dict[int, bytes], mtype: int
) -> None:
    """our builder writes -> scapy reads the same fields and options."""
    items = [(53, bytes([mtype])), *options.items()]
    packet = DhcpPacket(**header)  # type: ignore[arg-type]
    data = build(packet, 1472, items)
    theirs = BOOTP(data)
    for name, value in header.items():
        assert getattr(theirs, name) == value, name
    parsed = scapy_options(theirs)
    assert parsed[53] == bytes([mtype])
    assert {k: v for k, v in parsed.items() if k != 53} == options
    assert parse(data).options == dict(items)


@settings(max_examples=500)
@given(st.binary(max_size=700))
def test_any_bytes_parse_or_raise_remote_error(data: bytes) -> None:
    """Arbitrary input: a packet or RemoteProtocolError, nothing else."""
    try:
        packet = parse(data)
    except RemoteProtocolError:
        return
    # The typed views never raise either.
    for name in (
        "message_type",
        "mac",
        "requested_ip",
        "server_id",
        "client_id",
        "hostname",
        "max_message_size",
        "user_classes",
        "client_arches",
        "client_uuid",
        "relay_info",
    ):
        getattr(packet, name)


@settings(max_examples=300)
@given(st.binary(min_size=240, max_size=600))
def test_mutated_dhcp_packets_never_escape(tail: bytes) -> None:
    """A valid header and cookie followed by random option bytes."""
    head = raw(BOOTP(chaddr=b"\x02" * 6))[:236] + b"\x63\x82\x53\x63"
    with contextlib.suppress(RemoteProtocolError):
        parse(head + tail)


def test_option_overload_reads_file_and_sname() -> None:
    """RFC 2132 §9.3: options moved into file (1) and sname (2) are read too."""
    file = bytes([67, 3]) + b"abc" + b"\xff"
    sname = bytes([66, 2]) + b"xy" + b"\xff"
    pkt = BOOTP(chaddr=b"\x01" * 6, file=file.ljust(128, b"\0"), sname=sname.ljust(64, b"\0"))
    data = raw(pkt / DHCP(options=[("message-type", 1), ("dhcp-option-overload", 3), "end"]))
    ours = parse(data)
    assert ours.options[67] == b"abc"
    assert ours.options[66] == b"xy"


@pytest.mark.parametrize("value", [b"\x00", b"\x04", b"\x64", b"\x01\x02", b""])
def test_bad_overload_is_refused(value: bytes) -> None:
    """docs/threats.md A9: only 1, 2 or 3."""
    head = raw(BOOTP(chaddr=b"\x01" * 6))[:236] + b"\x63\x82\x53\x63"
    data = head + b"\x35\x01\x01" + bytes([52, len(value)]) + value + b"\xff"
    with pytest.raises(RemoteProtocolError):
        parse(data)


def test_duplicate_options_concatenate_and_long_options_split() -> None:
    """RFC 3396: a 600-byte option is split on build and joined on parse (and in scapy order)."""
    value = bytes(range(256)) * 2 + b"x" * 88
    data = build(DhcpPacket(chaddr=b"\x01" * 6), 1472, [(53, b"\x01"), (43, value)])
    assert parse(data).options[43] == value
    chunks = [
        v
        for k, *v in [o for o in BOOTP(data)[DHCP].options if isinstance(o, tuple)]
        if k == "vendor_specific"
    ]
    assert b"".join(c[0] for c in chunks) == value


def test_build_respects_size_limit() -> None:
    """docs/threats.md A6/A10: options that do not fit are left out whole; the reply stays in bounds."""
    many = [(53, b"\x02"), (54, b"\x0a\x00\x00\x01")] + [(c, b"z" * 40) for c in range(100, 130)]
    data = build(DhcpPacket(op=2), 576, many)
    assert len(data) <= 576
    parsed = parse(data)
    assert parsed.options[53] == b"\x02"
    assert all(len(v) == 40 for k, v in parsed.options.items() if k >= 100)
    assert len(encode_options([(1, b"abcd")], 100)) == 7


def test_min_bootp_length_and_no_cookie() -> None:
    """Replies are padded to 300 bytes; cookie-less BOOTP parses with no options."""
    assert len(build(DhcpPacket(), 576, [(53, b"\x02")])) == 300
    bootp = raw(BOOTP(chaddr=b"\x01" * 6, options=b""))
    parsed = parse(bootp + b"\0" * 64)
    assert not parsed.has_cookie
    assert parsed.message_type is None


def test_suboptions_and_uuid_swap() -> None:
    """Option 43/82 sub-TLVs are bounds-checked; the UUID swap is its own inverse."""
    assert parse_suboptions(b"\x01\x02ab\x02\x01c") == {1: b"ab", 2: b"c"}
    assert parse_suboptions(b"\x01\x05ab") is None
    guid = bytes.fromhex("00000000000000408000525400770013")
    assert swap_uuid(guid).hex() == "00000000000040008000525400770013"
    assert swap_uuid(swap_uuid(guid)) == guid


def test_user_class_forms() -> None:
    """Option 77: RFC 3004 instances, or iPXE's bare string."""
    base = DhcpPacket(options={77: b"iPXE"})
    assert base.user_classes == (b"iPXE",)
    framed = DhcpPacket(options={77: b"\x04iPXE\x03abc"})
    assert framed.user_classes == (b"iPXE", b"abc")
    assert DhcpPacket(options={57: struct.pack("!H", 64)}).max_message_size == 576
    assert DhcpPacket(options={57: b"\xff\xff"}).max_message_size == 1472
    assert Raw  # scapy import used for oracle helpers
