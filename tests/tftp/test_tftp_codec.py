"""Codec and option negotiation: round trips, garbage, and every abuse docs/threats.md B3/B5 lists."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.tftp.codec import (
    MAX_ERROR_MESSAGE,
    Ack,
    Data,
    ErrorPacket,
    LocalProtocolError,
    OAck,
    Opcode,
    RemoteProtocolError,
    Request,
    build_ack,
    build_data,
    build_error,
    build_oack,
    build_request,
    parse_packet,
    to_netascii,
)
from provisioner.tftp.options import Negotiated, negotiate


def test_request_round_trip_and_case_insensitive_names():
    raw = b"\x00\x01undionly.kpxe\x00OcTeT\x00BLKSIZE\x001468\x00tsize\x000\x00"
    packet = parse_packet(raw)
    assert packet == Request(Opcode.RRQ, "undionly.kpxe", "octet", (("blksize", "1468"), ("tsize", "0")))
    assert isinstance(packet, Request)
    assert packet.option("tsize") == "0"
    assert packet.option("timeout") is None
    assert parse_packet(build_request(Opcode.WRQ, "x")) == Request(Opcode.WRQ, "x", "octet")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00",
        b"\x00\x01",
        b"\x00\x01file",  # filename without NUL (B3)
        b"\x00\x01file\x00",  # no mode
        b"\x00\x01file\x00octet",  # mode without NUL
        b"\x00\x01fi\x01le\x00octet\x00",  # control character in the name
        b"\x00\x00file\x00octet\x00",  # opcode 0
        b"\x00\x07file\x00octet\x00",  # opcode 7
        b"\xff\xffxx",  # opcode 0xffff
        b"\x00\x04\x00",  # short ACK
        b"\x00\x04\x00\x01\x00",  # long ACK
        b"\x00\x03\x00",  # DATA without a block number
        b"\x00\x05\x00",  # ERROR without a code
        b"\x00\x06blksize\x00512",  # OACK without final NUL
    ],
)
def test_garbage_raises_remote_protocol_error(raw):
    with pytest.raises(RemoteProtocolError):
        parse_packet(raw)


def test_error_message_is_bounded_escaped_and_may_lack_nul():
    packet = parse_packet(b"\x00\x05\x00\x00" + b"\nFAKE\x1b[2J" + b"A" * 1400)
    assert isinstance(packet, ErrorPacket)
    assert "\n" not in packet.message
    assert "\x1b" not in packet.message
    assert len(packet.message) <= MAX_ERROR_MESSAGE * 4
    assert parse_packet(build_error(2, "nope")) == ErrorPacket(2, "nope")


def test_options_first_wins_dangling_ignored_and_count_bounded():
    raw = build_request(Opcode.RRQ, "f") + b"blksize\x00600\x00BLKSIZE\x00700\x00tsize\x00"
    packet = parse_packet(raw)
    assert isinstance(packet, Request)
    assert packet.options == (("blksize", "600"),)
    many = b"".join(f"o{i}\x001\x00".encode() for i in range(300))
    packet = parse_packet(build_request(Opcode.RRQ, "f") + many)
    assert isinstance(packet, Request)
    assert len(packet.options) == 64


def test_builders():
    assert parse_packet(build_ack(65536 + 5)) == Ack(5)
    assert parse_packet(build_data(65536, b"xy")) == Data(0, b"xy")
    assert parse_packet(build_oack((("tsize", "9"),))) == OAck((("tsize", "9"),))
    assert build_error(1, "h\x00é") == b"\x00\x05\x00\x01h??\x00"
    with pytest.raises(LocalProtocolError):
        build_oack(())
    with pytest.raises(LocalProtocolError):
        build_request(Opcode.ACK, "x")
    with pytest.raises(LocalProtocolError):
        build_request(Opcode.RRQ, "a\x00b")


def test_netascii_conversion():
    assert to_netascii(b"a\nb\r\nc\r") == b"a\r\nb\r\x00\r\nc\r\x00"


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_remote_error(raw):
    with contextlib.suppress(RemoteProtocolError):
        parse_packet(raw)


@given(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=100),
    st.lists(
        st.tuples(
            st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=9),
            st.text(st.characters(min_codepoint=48, max_codepoint=57), max_size=6),
        ),
        max_size=5,
        unique_by=lambda kv: kv[0],
    ),
)
def test_request_round_trip_property(name, options):
    packet = parse_packet(build_request(Opcode.RRQ, name, "octet", tuple(options)))
    assert packet == Request(Opcode.RRQ, name, "octet", tuple(options))


def _negotiate(*options: tuple[str, str], size: int = 1000) -> Negotiated:
    request = Request(Opcode.RRQ, "f", "octet", options)
    return negotiate(request, file_size=size, max_block_size=1468, max_window_size=16)


@pytest.mark.parametrize("bad", ["0", "7", "65465", "99999999", "-1", "abc", "", "1e3", " 512"])
def test_bad_blksize_is_ignored(bad):
    # docs/threats.md B5: out of range or not a number: as if never sent.
    assert _negotiate(("blksize", bad)) == Negotiated()


def test_blksize_clamped_to_path_limit():
    # docs/threats.md B6: 9000 on a 1500-byte path becomes 1468.
    assert _negotiate(("blksize", "9000")).oack == (("blksize", "1468"),)
    assert _negotiate(("blksize", "8")).block_size == 8


def test_timeout_tsize_windowsize():
    result = _negotiate(("timeout", "5"), ("tsize", "0"), ("windowsize", "64"), size=77)
    assert result == Negotiated(512, 16, 5.0, (("timeout", "5"), ("tsize", "77"), ("windowsize", "16")))
    assert _negotiate(("timeout", "0")) == Negotiated()
    assert _negotiate(("timeout", "256")) == Negotiated()
    # Declined above 10 s: a silent client must not hold a slot for long (B10).
    assert _negotiate(("timeout", "11")) == Negotiated()
    assert _negotiate(("timeout", "10")).timeout_s == 10.0
    assert _negotiate(("tsize", "x"), ("windowsize", "0")) == Negotiated()
    assert _negotiate(("multicast", ""), ("utimeout", "1000")) == Negotiated()
