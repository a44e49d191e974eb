"""docs/threats.md section A (DHCP rows A1-A22), over UDP on loopback, each with a survival check."""

from __future__ import annotations

import itertools
import logging
import os
import struct
import time
from collections.abc import Iterator

import pytest
from scapy.layers.dhcp import BOOTP

from provisioner.dhcp.codec import parse
from tests.dhcp.loopback import KNOWN_MAC, Loopback, loopback_service
from tests.dhcp.packets import base_packet, client_packet, reply_options

_macs = itertools.count(1)


def fresh_mac() -> str:
    n = next(_macs)
    return f"02:10:00:00:{n >> 8 & 255:02x}:{n & 255:02x}"


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    with loopback_service() as lb:
        yield lb


def survives(lb: Loopback) -> None:
    """The survival check: a normal DISCOVER still gets its OFFER."""
    lb.replies(0.01)
    mac = fresh_mac()
    lb.send(client_packet("discover", mac, xid=0x5151))
    replies = lb.replies(1.0)
    offers = [r for r in replies if parse(r).xid == 0x5151]
    assert offers, "no OFFER after the bad packet"
    assert parse(offers[0]).message_type == 2


def silent(lb: Loopback, *datagrams: bytes) -> None:
    for d in datagrams:
        lb.send(d)
    assert lb.replies(0.2) == []
    survives(lb)


def ask(lb: Loopback, data: bytes) -> list[bytes]:
    lb.replies(0.01)
    lb.send(data)
    return lb.replies(0.5)


def test_a1_option_overflow(server: Loopback) -> None:
    before = server.counters().get("dropped_malformed", 0)
    silent(server, base_packet(b"\x0c\xff\x41\x41\x41", end=False))
    assert server.counters()["dropped_malformed"] == before + 1


def test_a2_oversized_client_id(server: Loopback) -> None:
    data = base_packet(b"\x3d\xfe\x00" + b"\x12" * 253)
    out = ask(server, data)
    assert len(out) <= 1
    for key in server.service.book.by_key:
        assert len(key) <= 512
    survives(server)


def test_a3_hostname_and_fqdn_garbage(server: Loopback) -> None:
    for opts in (b"\x0c\x00\x00", b"\x51\x0f" + os.urandom(15), b"\x51\x45\x00\x00\x00\x40" + b"a" * 65):
        ask(server, base_packet(opts))
    survives(server)


def test_a4_mangled_fuzzer_style_packet(server: Loopback) -> None:
    """Second cookie, nested junk and ff ff inside options (regression seed, kept forever)."""
    seed = base_packet(b"\x63\x82\x53\x63\x35\x01\x03\xff\xff\x3d\x05\x01\xff\xff\x00\x00\x37\xff", end=False)
    silent(server, seed)


@pytest.mark.parametrize("size", [0, 1, 235, 240])
def test_a5_truncated(server: Loopback, size: int) -> None:
    data = (base_packet(b"") + b"\0" * 300)[:size]
    silent(server, data)


def test_a5_no_cookie_no_end_no_53(server: Loopback) -> None:
    no_cookie = base_packet(b"")[:236] + b"\0" * 64
    no_end = base_packet(b"\x3d\x02\x01\x02", end=False)
    bootp = base_packet(b"", mtype=b"")
    silent(server, no_cookie, no_end, bootp)


@pytest.mark.parametrize(("value", "limit"), [(b"\x00\x40", 576), (b"\xff\xff", 1472)])
def test_a6_max_message_size(server: Loopback, value: bytes, limit: int) -> None:
    big55 = bytes([55, 255]) + bytes(range(1, 256))
    out = ask(server, client_packet("discover", fresh_mac(), extra=[(57, value)])[:-1] + big55 + b"\xff")
    assert out
    assert all(len(r) <= limit for r in out)
    survives(server)


def test_a7_hlen_and_htype(server: Loopback) -> None:
    bad_hlen = bytearray(base_packet(b""))
    bad_hlen[2] = 0xFF
    htype0 = bytearray(base_packet(b""))
    htype0[1] = 0
    silent(server, bytes(bad_hlen), bytes(htype0))


def test_a8_no_leak(server: Loopback) -> None:
    """The reply is exactly header + cookie + the options we wrote + END, then zero padding."""
    marker = b"LEAKMARKER" * 20
    out = ask(server, client_packet("discover", fresh_mac(), extra=[(224, marker)]))
    assert out
    reply = out[0]
    assert b"LEAKMARK" not in reply
    body = reply[240:]
    pos = 0
    while body[pos] != 255:
        pos += 2 + body[pos + 1]
    assert set(body[pos + 1 :]) <= {0}
    assert len(reply) == max(300, 240 + pos + 1)
    survives(server)


def test_a9_overload(server: Loopback) -> None:
    junk = base_packet(b"\x34\x01\x03")
    junk = junk[:44] + os.urandom(64) + os.urandom(128) + junk[236:]
    silent(server, base_packet(b"\x34\x01\x64"), junk)


def test_a10_param_list_everything(server: Loopback) -> None:
    mac = fresh_mac()
    data = (
        client_packet("discover", mac)[:-1]
        + bytes([55, 255])
        + bytes([0, 255, 1, 1, *list(range(2, 253))])
        + b"\xff"
    )
    out = ask(server, data)
    assert out and len(out[0]) <= 576
    codes = []
    body = out[0][240:]
    pos = 0
    while body[pos] != 255:
        codes.append(body[pos])
        pos += 2 + body[pos + 1]
    assert len(codes) == len(set(codes))
    survives(server)


def test_a11_broken_pxe_options(server: Loopback) -> None:
    cases = [
        client_packet("discover", fresh_mac(), vendor=b"PXEClient"),
        client_packet("discover", fresh_mac(), vendor=b"PXEClient", extra=[(97, b"\x00\x01\x02")]),
        client_packet("discover", fresh_mac(), vendor=b"PXEClient", extra=[(97, b"\x05" + b"\x01" * 16)]),
        client_packet("discover", fresh_mac(), vendor=b"PXEClient", extra=[(93, b"\xff\xff")]),
        client_packet("discover", fresh_mac(), vendor=b"PXEClient", extra=[(43, b"\x06\x09\x01")]),
        client_packet("discover", fresh_mac(), vendor=b"PXEClient", extra=[(93, b"\x00")]),
    ]
    for data in cases:
        for reply in ask(server, data):
            _, opts = reply_options(reply)
            assert "boot-file-name" not in opts  # unknown machines never get a boot answer
    survives(server)


def test_a12_unknown_and_disallowed_get_no_boot(server: Loopback) -> None:
    for mac in (fresh_mac(), "52:54:00:77:00:12"):
        out = ask(server, client_packet("discover", mac, arch=7, vendor=b"PXEClient:Arch:00007:UNDI:003000"))
        assert out
        _, opts = reply_options(out[0])
        assert "boot-file-name" not in opts
    out = ask(
        server, client_packet("discover", KNOWN_MAC, arch=7, vendor=b"PXEClient:Arch:00007:UNDI:003000")
    )
    _, opts = reply_options(out[0])
    assert opts["boot-file-name"] == b"snponly.efi"
    survives(server)


def test_a14_unicast_from_unmatched_subnet(server: Loopback) -> None:
    data = client_packet(
        "request", fresh_mac(), ciaddr="203.0.113.9", extra=[("hostname", b"x"), (81, b"\x00\x00\x00x")]
    )
    silent(server, data)


def test_a16_log_injection_escaped(server: Loopback, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="provisioner")
    for name in (b"a\nFAKE LOG LINE", b"%s%s%n", b"\x1b[2J", b"a\x00b"):
        ask(server, base_packet(bytes([12, len(name)]) + name + b"\x0c\xff", end=False))
        ask(server, client_packet("discover", fresh_mac(), extra=[("hostname", name)]))
    for record in caplog.records:
        text = record.getMessage()
        assert "\n" not in text and "\x1b" not in text and "\x00" not in text
    assert any("malformed" in r.getMessage() for r in caplog.records)
    for lease in server.service.book.by_ip.values():
        assert lease.hostname.isprintable()
    survives(server)


def test_a17_client_option82_ignored(server: Loopback) -> None:
    out = ask(server, client_packet("discover", fresh_mac(), extra=[(82, b"\x01\x04evil")]))
    _, opts = reply_options(out[0])
    assert "relay_agent_information" not in opts


def test_a18_spoofed_relay(server: Loopback) -> None:
    silent(server, client_packet("discover", fresh_mac(), giaddr="10.9.9.9"))


def test_a20_forged_release_and_decline_flood(server: Loopback) -> None:
    victim = fresh_mac()
    out = ask(server, client_packet("discover", victim))
    ip = BOOTP(out[0]).yiaddr
    ask(server, client_packet("request", victim, requested=ip, server_id="127.0.0.1"))
    lease = server.service.book.lease_of(victim)
    assert lease is not None and lease.state == "bound"
    server.send(client_packet("release", victim, ciaddr=ip, server_id="10.1.1.1"))
    server.send(client_packet("release", fresh_mac(), ciaddr=ip, server_id="127.0.0.1"))
    for _ in range(50):
        server.send(client_packet("decline", fresh_mac(), requested=ip, server_id="127.0.0.1"))
    server.replies(0.3)
    assert server.service.book.lease_of(victim).state == "bound"
    survives(server)


def test_a22_no_amplification(server: Loopback) -> None:
    mac = fresh_mac()
    data = client_packet("discover", mac)[:-1] + bytes([55, 255]) + bytes(range(1, 256)) + b"\xff"
    started = time.monotonic()
    for _ in range(60):
        server.send(data)
    replies = server.replies(0.5)
    elapsed = time.monotonic() - started
    total = sum(len(r) for r in replies)
    assert all(len(r) <= len(data) for r in replies)
    # Token bucket: burst 20, refilled at 10/s while the flood was being handled.
    assert len(replies) <= 20 + 10 * elapsed + 1
    assert len(replies) < 60
    assert total < 60 * len(data)
    survives(server)


def test_a19_starvation_flood_known_machine_still_boots() -> None:
    with loopback_service(subnet=[{"cidr": "127.0.0.0/8", "pool": "127.0.0.100-127.0.0.149"}]) as lb:
        for i in range(3000):
            lb.send(client_packet("discover", f"02:20:00:00:{i >> 8:02x}:{i & 255:02x}"))
        lb.replies(1.0)
        counters = lb.counters()
        assert counters["offers_held"] <= 50
        assert counters["dropped_pool_exhausted"] > 0
        out = ask(lb, client_packet("discover", KNOWN_MAC, xid=77))
        assert [BOOTP(r).yiaddr for r in out if BOOTP(r).xid == 77] == ["127.0.0.11"]


def test_a21_proxy_never_sets_yiaddr() -> None:
    with loopback_service(mode="proxy") as lb:
        out = ask(
            lb, client_packet("discover", KNOWN_MAC, arch=7, vendor=b"PXEClient:Arch:00007:UNDI:003000")
        )
        assert out
        assert BOOTP(out[0]).yiaddr == "0.0.0.0"
        assert ask(lb, client_packet("discover", fresh_mac())) == []


def test_a15_whole_corpus_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Same results with DEBUG logging on: nothing in the log path touches unparsed data."""
    caplog.set_level(1, logger="provisioner")
    corpus = [
        base_packet(b"\x0c\xff\x41\x41\x41", end=False),
        base_packet(b"\x34\x01\x64"),
        base_packet(b"", mtype=b""),
        b"",
        b"\x01",
        struct.pack("!BBB", 1, 1, 255) + b"\0" * 300,
        client_packet("request", fresh_mac(), ciaddr="203.0.113.9"),
        client_packet("discover", fresh_mac(), giaddr="10.9.9.9"),
    ]
    with loopback_service() as lb:
        for data in corpus:
            lb.send(data)
        assert lb.replies(0.3) == []
        survives(lb)
        assert lb.counters().get("dropped_handler_error", 0) == 0
