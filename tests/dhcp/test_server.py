"""The sans-I/O core: RFC 2131 exchanges, reservations, relays, proxy, PXE gating."""

from __future__ import annotations

from provisioner.dhcp.server import DiscoveredMachine
from provisioner.events import Event
from tests.dhcp.harness import NOW, SERVER, Harness, make_config
from tests.dhcp.packets import IPXE_BIOS, OVMF, client_packet, reply_options

KNOWN = "52:54:00:77:00:11"
STRANGER = "02:00:00:00:00:01"


def one(out: list) -> tuple:
    assert len(out) == 1, out
    pkt, opts = reply_options(out[0].data)
    return out[0].addr, pkt, opts


def dora(h: Harness, mac: str, **kw: object) -> str:
    _, offer, _ = one(h.send(client_packet("discover", mac, **kw)))
    _, ack, opts = one(h.send(client_packet("request", mac, requested=offer.yiaddr, server_id=SERVER, **kw)))
    assert opts["message-type"] == 5
    return ack.yiaddr


def test_reservation_wins_with_machine_options() -> None:
    h = Harness()
    addr, offer, opts = one(h.send(client_packet("discover", KNOWN)))
    assert addr == ("255.255.255.255", 68)
    assert offer.yiaddr == "10.77.0.11"
    assert opts["message-type"] == 2
    assert opts["router"] == "10.77.0.1"
    assert opts["name_server"] == ("10.77.0.1", "10.77.0.2")
    assert opts["lease_time"] == 600
    assert opts["hostname"] == b"r1-n1"
    assert opts["domain"] == b"lab.example"
    assert opts["server_id"] == SERVER
    assert dora(h, KNOWN) == "10.77.0.11"
    assert h.committed[-1].ip == "10.77.0.11"
    assert any(isinstance(e, Event) and e.kind == "dhcp.ack" for e in h.events)


def test_pool_never_hands_out_reserved_and_same_address_back() -> None:
    machines_ip = "10.77.0.100"
    from provisioner.model import MachineSummary
    from tests.dhcp.harness import MACHINES

    extra = [*MACHINES, MachineSummary(name="z", macs=("52:54:00:00:00:99",), ip=machines_ip)]
    h = Harness(machines=extra)
    ip = dora(h, STRANGER)
    assert ip == "10.77.0.101"
    # RELEASE, then the client comes back and gets the same address.
    h.send(client_packet("release", STRANGER, ciaddr=ip, server_id=SERVER), addr=(ip, 68))
    assert h.committed[-1].state == "released"
    assert dora(h, STRANGER) == ip


def test_selecting_another_server_drops_our_offer() -> None:
    h = Harness()
    one(h.send(client_packet("discover", STRANGER)))
    assert h.core.book.offers_held == 1
    assert h.send(client_packet("request", STRANGER, requested="10.77.0.100", server_id="10.77.0.254")) == []
    assert h.core.book.offers_held == 0


def test_init_reboot_renew_rebind() -> None:
    h = Harness()
    ip = dora(h, STRANGER)
    # INIT-REBOOT for our address: ACK; for a wrong subnet: NAK (broadcast).
    _, ack, _ = one(h.send(client_packet("request", STRANGER, requested=ip)))
    assert ack.yiaddr == ip
    addr, _, opts = one(h.send(client_packet("request", STRANGER, requested="192.168.9.9")))
    assert opts["message-type"] == 6
    assert addr == ("255.255.255.255", 68)
    # RENEWING: unicast to ciaddr.
    addr, ack, opts = one(h.send(client_packet("request", STRANGER, ciaddr=ip), addr=(ip, 68), now=NOW + 300))
    assert addr == (ip, 68)
    assert opts["message-type"] == 5
    assert h.committed[-1].expires_at == NOW + 300 + 600
    # Another client asking for that address is refused.
    _, _, opts = one(h.send(client_packet("request", "02:00:00:00:00:02", requested=ip)))
    assert opts["message-type"] == 6


def test_decline_quarantines() -> None:
    h = Harness()
    ip = dora(h, STRANGER)
    assert h.send(client_packet("decline", STRANGER, requested=ip, server_id=SERVER)) == []
    assert h.committed[-1].state == "declined"
    _, offer, _ = one(h.send(client_packet("discover", STRANGER)))
    assert offer.yiaddr != ip
    _, offer2, _ = one(h.send(client_packet("discover", "02:00:00:00:00:03")))
    assert offer2.yiaddr != ip


def test_forged_release_is_ignored() -> None:
    h = Harness()
    ip = dora(h, STRANGER)
    h.send(client_packet("release", STRANGER, ciaddr=ip, server_id="10.9.9.9"))
    h.send(client_packet("release", "02:00:00:00:00:09", ciaddr=ip, server_id=SERVER))
    assert h.core.book.lease_of(STRANGER).state == "bound"
    assert h.core.counters["dropped_release_ignored"] == 2


def test_inform_gets_configuration_only() -> None:
    h = Harness()
    addr, ack, opts = one(
        h.send(client_packet("inform", STRANGER, ciaddr="10.77.0.50"), addr=("10.77.0.50", 68))
    )
    assert addr == ("10.77.0.50", 68)
    assert ack.yiaddr == "0.0.0.0"
    assert "lease_time" not in opts
    assert opts["router"] == "10.77.0.1"


def test_pool_exhaustion_answers_nothing_and_raises_event() -> None:
    h = Harness()
    for i in range(10):
        dora(h, f"02:00:00:00:01:{i:02x}")
    assert h.send(client_packet("discover", "02:00:00:00:02:00")) == []
    assert h.core.counters["dropped_pool_exhausted"] == 1
    assert [e.kind for e in h.events if isinstance(e, Event)] == ["dhcp.pool_exhausted"]
    # Known machines still boot (A19): their reservation needs no pool.
    assert dora(h, KNOWN) == "10.77.0.11"


def test_relay_allow_list_subnet_by_giaddr_and_option82() -> None:
    h = Harness()
    o82 = (82, b"\x01\x04port\x02\x03sw1")
    out = h.send(client_packet("discover", STRANGER, giaddr="10.78.0.1", extra=[o82]), addr=("10.78.0.1", 67))
    addr, offer, opts = one(out)
    assert addr == ("10.78.0.1", 67)
    assert offer.yiaddr.startswith("10.78.0.")
    assert offer.giaddr == "10.78.0.1"
    assert opts["relay_agent_information"]  # echoed
    # Reservation in the relayed subnet.
    _, offer, _ = one(
        h.send(client_packet("discover", "52:54:00:78:00:11", giaddr="10.78.0.1"), addr=("10.78.0.1", 67))
    )
    assert offer.yiaddr == "10.78.0.11"
    # A18: spoofed relay (sender not allow-listed) is dropped.
    assert h.send(client_packet("discover", STRANGER, giaddr="10.78.0.1"), addr=("10.0.0.66", 67)) == []
    assert h.send(client_packet("discover", STRANGER, giaddr="10.9.9.9"), addr=("10.78.0.1", 67)) == []
    # A17: option 82 from a direct client is ignored, not echoed.
    _, _, opts = one(h.send(client_packet("discover", "02:00:00:00:00:07", extra=[o82])))
    assert "relay_agent_information" not in opts


def test_pxe_boot_answers_and_gates() -> None:
    h = Harness()
    # OVMF native PXE, known machine matched by its swapped UUID (no MAC match).
    _, offer, opts = one(
        h.send(
            client_packet(
                "discover",
                "52:54:00:aa:bb:cc",
                arch=7,
                vendor=OVMF["vendor"],
                uuid="00000000-0000-4000-8000-525400770013",
            )
        )
    )
    assert offer.file.rstrip(b"\0") == b"snponly.efi"
    assert offer.siaddr == SERVER
    assert opts["boot-file-name"] == b"snponly.efi"
    assert opts["tftp_server_name"] == SERVER.encode()
    assert opts["pxe_client_machine_identifier"][0:1] == b"\x00"
    # iPXE: the HTTP script.
    _, offer, opts = one(
        h.send(client_packet("discover", KNOWN, arch=0, vendor=IPXE_BIOS["vendor"], user=b"iPXE"))
    )
    assert opts["boot-file-name"] == b"http://10.77.0.1:8080/boot.ipxe"
    # pxe_allowed False: an address but no boot file.
    _, offer, opts = one(
        h.send(client_packet("discover", "52:54:00:77:00:12", arch=0, vendor=IPXE_BIOS["vendor"]))
    )
    assert offer.yiaddr == "10.77.0.12"
    assert "boot-file-name" not in opts
    # Unknown machine: address, no boot, recorded with what it sent.
    _, offer, opts = one(h.send(client_packet("discover", STRANGER, arch=7, vendor=OVMF["vendor"])))
    assert "boot-file-name" not in opts
    found = [e for e in h.events if isinstance(e, DiscoveredMachine)]
    assert len(found) == 1
    assert found[0].mac == STRANGER
    assert found[0].arch == 7
    assert found[0].vendor_class.startswith("PXEClient")


def test_unknown_machine_policies() -> None:
    for policy, boots, recorded in (("ignore", False, 0), ("record", False, 1), ("discovery", True, 1)):
        h = Harness(make_config(unknown_machines=policy))
        _, _, opts = one(h.send(client_packet("discover", STRANGER, arch=0, vendor=b"PXEClient")))
        assert ("boot-file-name" in opts) is boots, policy
        assert len([e for e in h.events if isinstance(e, DiscoveredMachine)]) == recorded


def test_proxy_mode() -> None:
    h = Harness(make_config(mode="proxy"))
    # Non-PXE clients: silence.
    assert h.send(client_packet("discover", STRANGER)) == []
    addr, offer, opts = one(
        h.send(
            client_packet(
                "discover", KNOWN, arch=7, vendor=OVMF["vendor"], uuid="00000000-0000-4000-8000-525400770011"
            )
        )
    )
    assert offer.yiaddr == "0.0.0.0"
    assert opts["vendor_class_id"] == b"PXEClient"
    assert offer.file.rstrip(b"\0") == b"snponly.efi"
    assert "lease_time" not in opts
    # Port 4011 REQUEST: ACK unicast to where it came from, still no address.
    addr, ack, opts = one(
        h.send(
            client_packet("request", KNOWN, ciaddr="10.77.0.55", arch=7, vendor=OVMF["vendor"]),
            addr=("10.77.0.55", 4011),
            proxy_port=True,
        )
    )
    assert addr == ("10.77.0.55", 4011)
    assert ack.yiaddr == "0.0.0.0"
    assert opts["message-type"] == 5
    assert opts["boot-file-name"] == b"snponly.efi"
    # REQUESTs on 67 belong to the real DHCP server.
    assert (
        h.send(
            client_packet(
                "request",
                KNOWN,
                requested="10.77.0.55",
                server_id="10.77.0.254",
                arch=7,
                vendor=OVMF["vendor"],
            )
        )
        == []
    )
    assert not h.committed


def test_commit_conflict_naks() -> None:
    h = Harness(commit_ok=False)
    _, offer, _ = one(h.send(client_packet("discover", STRANGER)))
    _, _, opts = one(h.send(client_packet("request", STRANGER, requested=offer.yiaddr, server_id=SERVER)))
    assert opts["message-type"] == 6
    assert h.core.book.lease_of(STRANGER) is None


def test_rate_limit_per_client() -> None:
    h = Harness()
    answered = sum(len(h.send(client_packet("discover", STRANGER))) for _ in range(100))
    assert answered == 20
    assert h.core.counters["dropped_rate_limited"] == 80
    assert len(h.send(client_packet("discover", STRANGER), now=NOW + 1)) == 1


def test_renewal_from_a_relayed_subnet_comes_direct() -> None:
    """RFC 2131 §4.4.5: RENEWING is unicast to us, not through the relay."""
    h = Harness()
    mac = "52:54:00:78:00:11"
    _, offer, _ = one(h.send(client_packet("discover", mac, giaddr="10.78.0.1"), addr=("10.78.0.1", 67)))
    h.send(
        client_packet("request", mac, giaddr="10.78.0.1", requested=offer.yiaddr, server_id=SERVER),
        addr=("10.78.0.1", 67),
    )
    addr, _ack, opts = one(
        h.send(client_packet("request", mac, ciaddr="10.78.0.11"), addr=("10.78.0.11", 68))
    )
    assert addr == ("10.78.0.11", 68)
    assert opts["message-type"] == 5
    assert opts["router"] == "10.78.0.1"
