"""Edges of the pure DHCP cores the exchange tests do not reach: the lease book's
bookkeeping, codec corner cases, the rate and recent-set limits, allocation fallbacks and
the core's rarely taken branches. Each test states the rule it checks."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from provisioner.dhcp.allocate import Allocator, ClientView, sanitize_hostname
from provisioner.dhcp.book import Lease, LeaseBook, LeaseState, Pool, int_to_ip, ip_to_int
from provisioner.dhcp.codec import (
    DhcpPacket,
    LocalProtocolError,
    build,
    encode_options,
    ip_to_bytes,
    parse,
    parse_suboptions,
)
from provisioner.dhcp.limits import RateLimiter, RecentSet
from provisioner.dhcp.options import Opt
from provisioner.dhcp.server import DhcpServer
from provisioner.matching import MachineIndex, RequestLabels
from tests.dhcp.harness import MACHINES, NOW, SERVER, Harness, make_config, subnet
from tests.dhcp.packets import base_packet, client_packet, reply_options

STRANGER = "02:00:00:00:00:01"
OTHER = "02:00:00:00:00:02"


# -- the lease book ---------------------------------------------------------------------


def test_dotted_quads_round_trip_and_bad_ones_are_refused() -> None:
    assert ip_to_int("10.77.0.1") == 0x0A4D0001
    assert int_to_ip(0x0A4D0001) == "10.77.0.1"
    for bad in ("10.77.0", "10.77.0.256", "10.-1.0.1"):
        with pytest.raises(ValueError, match="10"):
            ip_to_int(bad)


def test_a_client_moving_to_another_address_leaves_no_stale_record() -> None:
    book = LeaseBook()
    book.load([Lease("10.77.0.100", STRANGER, expires_at=NOW + 60)])
    book.put(Lease("10.77.0.101", STRANGER, expires_at=NOW + 60))
    assert "10.77.0.100" not in book.by_ip
    assert book.lease_of(STRANGER) is not None
    assert book.lease_of(STRANGER).ip == "10.77.0.101"  # type: ignore[union-attr]
    assert len(book) == 1


def test_an_address_taken_over_by_another_client_forgets_the_old_client() -> None:
    book = LeaseBook()
    book.put(Lease("10.77.0.100", STRANGER, expires_at=NOW + 60))
    old = book.put(Lease("10.77.0.100", OTHER, expires_at=NOW + 60))
    assert old is not None
    assert old.mac == STRANGER
    assert book.lease_of(STRANGER) is None
    assert book.holder("10.77.0.100", NOW) == OTHER


def test_restore_undoes_a_put_whose_commit_failed() -> None:
    book = LeaseBook()
    first = Lease("10.77.0.100", STRANGER, expires_at=NOW + 60)
    book.put(first)
    renewed = replace(first, expires_at=NOW + 600)
    previous = book.put(renewed)
    book.restore(renewed, previous)
    assert book.by_ip["10.77.0.100"] == first
    # A brand-new lease with nothing before it disappears entirely.
    fresh = Lease("10.77.0.105", OTHER, expires_at=NOW + 60)
    book.restore(fresh, book.put(fresh))
    assert "10.77.0.105" not in book.by_ip
    assert book.lease_of(OTHER) is None
    # Restoring a lease that is no longer the current record changes nothing.
    book.restore(fresh, None)
    assert book.by_ip["10.77.0.100"] == first


def test_quarantine_expires_and_is_bounded() -> None:
    book = LeaseBook(max_quarantine=2)
    for n, ip in enumerate(("10.77.0.100", "10.77.0.101", "10.77.0.102")):
        book.put(Lease(ip, f"02:00:00:00:01:0{n}", state=LeaseState.DECLINED, expires_at=NOW + 10))
    # The oldest entry gave way; the record itself still holds its address.
    assert not book.quarantined("10.77.0.100", NOW)
    assert book.quarantined("10.77.0.101", NOW)
    assert book.quarantined("10.77.0.102", NOW)
    assert book.holder("10.77.0.101", NOW) == "declined"
    # After the quarantine lapses the address is free again and the entry is gone.
    assert book.holder("10.77.0.101", NOW + 11) is None
    assert not book.quarantined("10.77.0.101", NOW + 11)
    book.expire(NOW + 11)
    assert not book.quarantined("10.77.0.102", NOW)


def test_offers_lapse_and_a_full_table_refuses_new_clients() -> None:
    book = LeaseBook(offer_hold_s=30, max_offers=2)
    assert book.next_offer_expiry() is None
    assert book.hold_offer("a", "10.77.0.100", NOW)
    assert book.hold_offer("b", "10.77.0.101", NOW + 5)
    assert book.next_offer_expiry() == NOW + 30
    assert not book.hold_offer("c", "10.77.0.102", NOW + 10)  # A19: full, nothing lapsed
    assert book.hold_offer("a", "10.77.0.103", NOW + 10)  # an existing client may re-offer
    assert book.offer_of("a", NOW + 10) == "10.77.0.103"
    assert book.holder("10.77.0.100", NOW + 10) is None  # its old address is free
    # Once the oldest lapses, a new client fits again.
    assert book.hold_offer("c", "10.77.0.102", NOW + 36)
    assert book.offer_of("b", NOW + 36) is None
    assert book.offers_held == 2
    book.expire_offers(NOW + 100)
    assert book.offers_held == 0
    assert book.next_offer_expiry() is None


def test_a_stale_offer_stops_holding_its_address() -> None:
    book = LeaseBook(offer_hold_s=30)
    book.hold_offer("a", "10.77.0.100", NOW)
    assert book.holder("10.77.0.100", NOW + 1) == "a"
    assert book.holder("10.77.0.100", NOW + 31) is None
    # The lookup forgot the lapsed offer: it no longer holds anything.
    assert book.offer_of("a", NOW) is None


def test_an_exhausted_pool_is_not_rescanned_until_the_recheck() -> None:
    book = LeaseBook()
    pool = Pool.from_range("10.77.0.100", "10.77.0.100")
    book.put(Lease("10.77.0.100", OTHER, expires_at=NOW + 600))
    assert book.allocate(pool, STRANGER, NOW, frozenset()) is None
    assert pool.exhausted_until > NOW
    book.put(book.released(book.by_ip["10.77.0.100"], NOW))
    assert book.allocate(pool, STRANGER, NOW + 0.5, frozenset()) is None  # still backing off
    assert book.allocate(pool, STRANGER, NOW + 2, frozenset()) == "10.77.0.100"


# -- codec corners ------------------------------------------------------------------------


def test_our_own_bad_addresses_are_local_errors() -> None:
    assert ip_to_bytes("10.77.0.1") == b"\x0a\x4d\x00\x01"
    for bad in ("10.77.0.x", "10.77.0", "10.77.0.1.2"):
        with pytest.raises(LocalProtocolError, match="not an IPv4 address"):
            ip_to_bytes(bad)
    with pytest.raises(LocalProtocolError, match="hlen 17"):
        build(DhcpPacket(hlen=17))
    with pytest.raises(LocalProtocolError, match="cannot encode header"):
        build(DhcpPacket(xid=2**32))
    with pytest.raises(LocalProtocolError, match="cannot carry a value"):
        encode_options([(Opt.PAD, b"")], 100)


def test_plain_bootp_is_padded_to_the_bootp_minimum() -> None:
    data = build(DhcpPacket(op=2, has_cookie=False))
    assert len(data) == 300
    assert parse(data).has_cookie is False


def test_suboptions_skip_pad_and_stop_at_end() -> None:
    assert parse_suboptions(b"\x00\x01\x01a\xff\x02\x01b") == {1: b"a"}
    assert parse_suboptions(b"\x01\x01a\x02") is None  # a code with no length byte


def test_overload_of_sname_only_reads_sname() -> None:
    sname = bytes([Opt.HOSTNAME, 2]) + b"hi"  # no END inside the field: allowed
    file = bytes([15, 2]) + b"xx"  # option 15, domain name
    packet = DhcpPacket(sname=sname, file=file, options={Opt.MESSAGE_TYPE: b"\x01", Opt.OVERLOAD: b"\x02"})
    parsed = parse(build(packet))
    assert parsed.hostname == b"hi"
    assert 15 not in parsed.options
    assert parsed.param_request_list == b""
    with_prl = replace(packet, options={**packet.options, Opt.PARAM_REQUEST_LIST: b"\x01\x03"})
    assert parse(build(with_prl)).param_request_list == b"\x01\x03"


# -- limits ---------------------------------------------------------------------------------


def test_rate_limiter_evicts_the_oldest_key_and_prunes_idle_ones() -> None:
    limiter = RateLimiter(rate=1.0, burst=1.0, max_keys=2)
    assert limiter.allow("a", NOW)
    assert not limiter.allow("a", NOW)  # burst of one
    assert limiter.allow("b", NOW)
    assert limiter.allow("c", NOW)  # evicts "a"
    assert len(limiter) == 2
    assert limiter.allow("a", NOW)  # a fresh, full bucket again
    limiter.prune(NOW + 1)
    assert len(limiter) == 0


def test_recent_set_reports_once_per_window_and_is_bounded() -> None:
    recent = RecentSet(window=60.0, max_keys=2)
    assert recent.first_in_window("a", NOW)
    assert not recent.first_in_window("a", NOW + 59)
    assert recent.first_in_window("b", NOW)
    assert recent.first_in_window("c", NOW)  # evicts "a"
    assert recent.first_in_window("a", NOW + 1)
    assert recent.first_in_window("b", NOW + 61)  # the window passed
    recent.prune(NOW + 200)
    assert recent.first_in_window("c", NOW + 200)


# -- allocation -----------------------------------------------------------------------------


def test_hostnames_that_are_not_ascii_labels_are_dropped() -> None:
    assert sanitize_hostname(b"node-1") == "node-1"
    assert sanitize_hostname("nöde".encode()) == ""
    assert sanitize_hostname(b"-bad") == ""


def _view(mac: str, requested: str | None = None) -> ClientView:
    return ClientView(
        mac=mac, client_id="", hostname="", requested_ip=requested, labels=RequestLabels(mac=mac)
    )


def test_a_subnet_without_pool_offers_nothing_to_strangers() -> None:
    book = LeaseBook()
    reserved_only = subnet(pool=None)
    alloc = Allocator(make_config(subnets=(reserved_only,)), book)
    assert alloc.choose(_view(STRANGER), reserved_only, None, frozenset(), NOW) is None


def test_a_client_may_keep_its_own_lease_outside_the_pool() -> None:
    book = LeaseBook()
    sub = subnet()
    alloc = Allocator(make_config(), book)
    outside = "10.77.0.50"  # in the subnet, outside the pool
    assert not alloc.acceptable(_view(STRANGER), outside, sub, None, frozenset(), NOW)
    book.put(Lease(outside, STRANGER, expires_at=NOW + 60))
    assert alloc.acceptable(_view(STRANGER), outside, sub, None, frozenset(), NOW)
    assert not alloc.acceptable(_view(OTHER), outside, sub, None, frozenset(), NOW)


# -- the core's rare branches -----------------------------------------------------------------


def test_replies_from_other_servers_and_server_types_are_dropped() -> None:
    h = Harness()
    assert h.send(base_packet(b"", mtype=b"\x35\x01\x02").replace(b"\x01", b"\x02", 1)) == []
    assert h.core.counters["dropped_not_request"] == 1
    assert h.send(client_packet("offer", STRANGER)) == []  # a client cannot send OFFER
    assert h.core.counters["dropped_server_message"] == 1


def test_a_lost_commit_learns_the_winner_and_naks() -> None:
    index = MachineIndex(MACHINES)
    core = DhcpServer(make_config(), lambda: index)
    core.receive_datagram(client_packet("discover", STRANGER), ("0.0.0.0", 68), NOW)
    offer = reply_options(core.datagrams_to_send()[0].data)[0].yiaddr
    request = client_packet("request", STRANGER, requested=offer, server_id=SERVER)
    core.receive_datagram(request, ("0.0.0.0", 68), NOW)
    (pending,) = core.commits_to_write()
    winner = Lease(offer, OTHER, expires_at=NOW + 600, instance="b")
    core.commit_done(pending, ok=False, winner=winner)
    (nak,) = core.datagrams_to_send()
    assert reply_options(nak.data)[1]["message-type"] == 6
    assert core.book.holder(offer, NOW) == OTHER
    assert core.counters["commit_conflict"] == 1


def test_a_failed_decline_write_sends_nothing() -> None:
    h = Harness()
    offer, offer_opts = reply_options(h.send(client_packet("discover", STRANGER))[0].data)
    offered = offer.yiaddr
    h.send(client_packet("request", STRANGER, requested=offered, server_id=SERVER))
    h.commit_ok = False
    out = h.send(client_packet("decline", STRANGER, requested=offered, server_id=SERVER))
    assert out == []  # a DECLINE has no answer, even when its write fails
    assert offer_opts["message-type"] == 2
    assert h.core.counters["commit_conflict"] == 1


def test_learn_keeps_the_newer_record() -> None:
    h = Harness()
    newer = Lease("10.77.0.100", STRANGER, expires_at=NOW + 600)
    h.core.learn(newer)
    h.core.learn(replace(newer, expires_at=NOW + 60))  # older news about the same client
    assert h.core.book.by_ip["10.77.0.100"].expires_at == NOW + 600
    h.core.learn(Lease("10.77.0.100", OTHER, expires_at=NOW + 30))  # another client: taken
    assert h.core.book.holder("10.77.0.100", NOW) == OTHER


def test_a_full_offer_table_drops_new_discovers() -> None:
    index = MachineIndex(MACHINES)
    core = DhcpServer(make_config(), lambda: index, book=LeaseBook(max_offers=1))
    core.receive_datagram(client_packet("discover", STRANGER), ("0.0.0.0", 68), NOW)
    core.receive_datagram(client_packet("discover", OTHER), ("0.0.0.0", 68), NOW)
    assert len(core.datagrams_to_send()) == 1
    assert core.counters["dropped_offer_table_full"] == 1


def test_declines_that_do_not_match_a_lease_are_ignored() -> None:
    h = Harness()
    assert h.send(client_packet("decline", STRANGER, requested="10.77.0.100", server_id=SERVER)) == []
    assert h.core.counters["dropped_decline_ignored"] == 1


def test_a_decline_in_a_subnet_without_pool_is_quarantined() -> None:
    reserved_only = subnet(pool=None)
    h = Harness(config=make_config(subnets=(reserved_only,)))
    known = "52:54:00:77:00:11"  # r1-n1, reserved 10.77.0.11
    offer, _ = reply_options(h.send(client_packet("discover", known))[0].data)
    h.send(client_packet("request", known, requested=offer.yiaddr, server_id=SERVER))
    h.send(client_packet("decline", known, requested=offer.yiaddr, server_id=SERVER))
    assert h.committed[-1].state == LeaseState.DECLINED
    assert h.core.book.quarantined(offer.yiaddr, NOW)


def test_unknown_machines_are_reported_once_per_window() -> None:
    h = Harness(config=make_config(unknown_machines="record"))
    h.send(client_packet("discover", STRANGER, arch=0, vendor=b"PXEClient:Arch:00000:UNDI:002001"))
    h.send(client_packet("discover", STRANGER, arch=0, vendor=b"PXEClient:Arch:00000:UNDI:002001"))
    discovered = [e for e in h.events if type(e).__name__ == "DiscoveredMachine"]
    assert len(discovered) == 1


def test_pool_exhaustion_is_reported_at_most_once_a_minute() -> None:
    tiny = subnet(pool=("10.77.0.100", "10.77.0.100"))
    h = Harness(config=make_config(subnets=(tiny,)))
    h.core.book.put(Lease("10.77.0.100", OTHER, expires_at=NOW + 3600))
    for n in range(3):
        h.send(client_packet("discover", STRANGER), now=NOW + 2 * n)
    kinds = [getattr(e, "kind", None) for e in h.events]
    assert kinds.count("dhcp.pool_exhausted") == 1
    assert h.core.counters["dropped_pool_exhausted"] == 3


def test_drops_are_logged_at_debug_with_client_data_escaped(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    with caplog.at_level(logging.DEBUG, logger="provisioner.dhcp.server"):
        h.send(b"\x01\n\x1b[31m", addr=("10.0.0.9", 68))
    (record,) = [r for r in caplog.records if "dhcp drop" in r.getMessage()]
    assert "malformed" in record.getMessage()
    assert "\n" not in record.getMessage()
