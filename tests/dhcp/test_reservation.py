"""A machine's reservation follows it through every boot stage (issue 11, item 1).

One machine speaks DHCP as three clients during one boot, each with the packet shape its
real software sends:

- UEFI firmware PXE (edk2/OVMF): no option 61; option 93 = 7 (x64 UEFI), option 60
  `PXEClient:Arch:00007:UNDI:003000`, option 94 (UNDI 3.0), option 97 (SMBIOS UUID);
- iPXE (snponly.efi): option 61 = 01 + MAC, option 77 `iPXE`, and again 93/60/94/97;
- the installed OS: its own option 61 (busybox udhcpc sends 01 + MAC; dhclient or
  systemd-networkd an RFC 4361 `ff` + IAID + DUID, used here), its hostname, no PXE options.

Each must get the inventory address, also when reprovisioning finds the OS lease still
bound, and also on a subnet with no pool (where a wrong answer is no answer at all).
Clients not in the inventory keep RFC 2131 §4.2 / RFC 6842 semantics: two client
identifiers are two clients, even on one MAC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from provisioner.dhcp.book import Lease
from provisioner.model import MachineSummary
from provisioner.store.db import make_engine
from provisioner.store.leases import SqlLeaseStore
from tests.dhcp.harness import MACHINES, NOW, SERVER, Harness, make_config, subnet
from tests.dhcp.loopback import loopback_service
from tests.dhcp.packets import client_packet, mac_bytes, reply_options

MAC = "52:54:00:77:00:11"  # r1-n1 in the harness inventory: 10.77.0.11, UUID ...0011
UUID = "00000000-0000-4000-8000-525400770011"
RESERVED = "10.77.0.11"
OS_CLIENT_ID = bytes.fromhex("ff" + "00000001" + "0003" + "0001") + mac_bytes(MAC)  # RFC 4361, DUID-LL


@dataclass(frozen=True)
class Stage:
    """One boot stage: the options its DHCP client sends."""

    name: str
    options: dict[str, object]


def ovmf_pxe(uuid: str = UUID) -> Stage:
    return Stage(
        "ovmf-pxe",
        {
            "arch": 7,
            "vendor": b"PXEClient:Arch:00007:UNDI:003000",
            "uuid": uuid,
            "extra": [(94, b"\x01\x03\x00"), ("max_dhcp_size", 1472)],
        },
    )


def ipxe(mac: str = MAC, uuid: str = UUID) -> Stage:
    return Stage(
        "ipxe",
        {
            "arch": 7,
            "vendor": b"PXEClient:Arch:00007:UNDI:003010",
            "user": b"iPXE",
            "uuid": uuid,
            "client_id": b"\x01" + mac_bytes(mac),
            "extra": [(94, b"\x01\x03\x0a"), ("max_dhcp_size", 1472)],
        },
    )


def installed_os() -> Stage:
    return Stage("os", {"client_id": OS_CLIENT_ID, "extra": [("hostname", b"r1-n1")]})


def boot_sequence() -> list[Stage]:
    """The real order: firmware PXE -> iPXE -> OS -> (reprovision) firmware PXE -> iPXE."""
    return [ovmf_pxe(), ipxe(), installed_os(), ovmf_pxe(), ipxe()]


def one_reply(out: list[bytes]) -> tuple[str, int]:
    assert len(out) == 1, f"expected one reply, got {len(out)}"
    pkt, opts = reply_options(out[0])
    return pkt.yiaddr, int(opts["message-type"])


def dora(send: Callable[[bytes], list[bytes]], mac: str, stage: Stage, xid: int, server: str = SERVER) -> str:
    """DISCOVER -> OFFER -> REQUEST -> ACK; the address both the OFFER and the ACK carry."""
    offered, mtype = one_reply(send(client_packet("discover", mac, xid=xid, **stage.options)))  # type: ignore[arg-type]
    assert mtype == 2, f"{stage.name}: no OFFER"
    request = client_packet("request", mac, xid=xid, requested=offered, server_id=server, **stage.options)  # type: ignore[arg-type]
    acked, mtype = one_reply(send(request))
    assert mtype == 5, f"{stage.name}: REQUEST for {offered} was not ACKed"
    assert acked == offered
    return acked


def harness(*, pool: bool, machines: list[MachineSummary] | None = None) -> Harness:
    local = subnet() if pool else subnet(pool=None)
    return Harness(make_config(subnets=(local,)), machines)


def harness_send(h: Harness, clock: list[float]) -> Callable[[bytes], list[bytes]]:
    def send(data: bytes) -> list[bytes]:
        clock[0] += 1.0
        return [out.data for out in h.send(data, now=clock[0])]

    return send


# -- the sans-I/O core -------------------------------------------------------------------


@pytest.mark.parametrize("pool", [True, False], ids=["pool", "reservation-only"])
def test_reservation_follows_the_machine_through_every_boot_stage(pool: bool) -> None:
    h = harness(pool=pool)
    send = harness_send(h, [NOW])
    for xid, stage in enumerate(boot_sequence(), start=1):
        assert dora(send, MAC, stage, xid) == RESERVED, stage.name
        lease = h.committed[-1]
        assert isinstance(lease, Lease)
        assert (lease.ip, lease.mac, lease.machine) == (RESERVED, MAC, "r1-n1")
    # one binding: the book holds one lease for the machine, under its MAC
    assert [x.ip for x in h.core.book.by_ip.values() if x.mac == MAC] == [RESERVED]
    assert h.core.book.lease_of(MAC) == h.committed[-1]


@pytest.mark.parametrize("pool", [True, False], ids=["pool", "reservation-only"])
def test_os_renewal_and_init_reboot_keep_the_reservation_after_ipxe(pool: bool) -> None:
    """The OS renews (RENEWING, ciaddr) and reboots (INIT-REBOOT, option 50) on its own id."""
    h = harness(pool=pool)
    clock = [NOW]
    send = harness_send(h, clock)
    assert dora(send, MAC, ovmf_pxe(), 1) == RESERVED
    assert dora(send, MAC, ipxe(), 2) == RESERVED
    os_opts = installed_os().options
    init_reboot = client_packet("request", MAC, xid=3, requested=RESERVED, **os_opts)  # type: ignore[arg-type]
    assert one_reply(send(init_reboot)) == (RESERVED, 5)
    renew = client_packet("request", MAC, xid=4, ciaddr=RESERVED, **os_opts)  # type: ignore[arg-type]
    assert one_reply([o.data for o in h.send(renew, (RESERVED, 68), now=clock[0] + 300)]) == (RESERVED, 5)
    # reprovision: the firmware's DISCOVER finds the OS lease still bound
    assert h.core.book.by_ip[RESERVED].client_id == OS_CLIENT_ID.hex()
    assert dora(harness_send(h, [clock[0] + 301]), MAC, ovmf_pxe(), 5) == RESERVED


@pytest.mark.parametrize("pool", [True, False], ids=["pool", "reservation-only"])
def test_machine_matched_by_uuid_keeps_its_reservation(pool: bool) -> None:
    """The inventory knows this machine by SMBIOS UUID; the NIC it boots from is not listed."""
    nic = "52:54:00:aa:bb:cc"
    machines = [MachineSummary(name="u1", macs=("52:54:00:00:00:01",), uuid=UUID, ip="10.77.0.21")]
    h = harness(pool=pool, machines=machines)
    send = harness_send(h, [NOW])
    for xid, stage in enumerate([ovmf_pxe(), ipxe(nic), ovmf_pxe(), ipxe(nic)], start=1):
        assert dora(send, nic, stage, xid) == "10.77.0.21", stage.name
        assert h.committed[-1].machine == "u1"  # type: ignore[attr-defined]


def test_second_nic_of_a_machine_never_shares_its_address() -> None:
    """Same machine, another MAC: another binding (two live NICs must not share one address)."""
    second = "52:54:00:77:00:f1"
    machines = [MachineSummary(name="r1-n1", macs=(MAC, second), ip=RESERVED), *MACHINES[1:]]
    h = harness(pool=True, machines=machines)
    send = harness_send(h, [NOW])
    assert dora(send, MAC, installed_os(), 1) == RESERVED
    os2 = Stage("os-nic2", {"client_id": b"\x01" + mac_bytes(second)})
    other = dora(send, second, os2, 2)
    assert other != RESERVED
    assert other.startswith("10.77.0.10")  # the pool


def test_unknown_clients_with_different_client_ids_get_distinct_leases() -> None:
    """RFC 2131 §4.2, RFC 6842: option 61 identifies a client not in the inventory."""
    stranger = "02:00:00:00:00:01"
    h = harness(pool=True)
    send = harness_send(h, [NOW])
    a = dora(send, stranger, Stage("a", {"client_id": b"\x01" + mac_bytes(stranger)}), 1)
    b = dora(send, stranger, Stage("b", {"client_id": b"\xffclient-b"}), 2)
    c = dora(send, stranger, Stage("no-61", {}), 3)
    assert len({a, b, c}) == 3
    assert {lease.ip for lease in h.core.book.by_ip.values()} == {a, b, c}
    # the same client identifier from another NIC is the same client (RFC 2131 §4.2)
    again = dora(send, "02:00:00:00:00:02", Stage("a-moved", {"client_id": b"\x01" + mac_bytes(stranger)}), 4)
    assert again == a


# -- real UDP, durable leases (SQLite and PostgreSQL) ------------------------------------

LO_MAC = "52:54:00:77:00:31"
LO_UUID = "00000000-0000-4000-8000-525400770031"
LO_RESERVED = "127.0.0.31"
LO_MACHINES = [MachineSummary(name="lo-uefi", macs=(LO_MAC,), uuid=LO_UUID, ip=LO_RESERVED)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def lease_db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/leases.db"
    return str(request.getfixturevalue("pg_database_url"))


async def _rows(url: str) -> list[Lease]:
    engine = make_engine(url)
    try:
        return (await SqlLeaseStore(engine).load()).leases
    finally:
        await engine.dispose()


@pytest.mark.parametrize("pool", [True, False], ids=["pool", "reservation-only"])
def test_boot_stages_over_udp_with_durable_leases(lease_db_url: str, pool: bool) -> None:
    """The whole sequence through the asyncio service and the SQL upsert rule."""
    subnet_settings = {"cidr": "127.0.0.0/8", "gateway": "127.0.0.1", "lease_time": 600}
    if pool:
        subnet_settings["pool"] = "127.0.0.100-127.0.0.250"
    stages = [
        ovmf_pxe(LO_UUID),
        ipxe(LO_MAC, LO_UUID),
        Stage("os", {"client_id": b"\x01" + mac_bytes(LO_MAC)}),  # busybox udhcpc's default id
        Stage("os-duid", {"client_id": OS_CLIENT_ID}),
        ovmf_pxe(LO_UUID),
        ipxe(LO_MAC, LO_UUID),
    ]
    with loopback_service(db_url=lease_db_url, machines=LO_MACHINES, subnet=[subnet_settings]) as lb:

        def send(data: bytes) -> list[bytes]:
            lb.send(data)
            return lb.replies(1.0)

        for xid, stage in enumerate(stages, start=1):
            assert dora(send, LO_MAC, stage, xid, "127.0.0.1") == LO_RESERVED, stage.name
        counters = lb.counters()
        assert counters.get("commit_conflict", 0) == 0
        assert counters["ack"] == len(stages)
    rows = asyncio.run(_rows(lease_db_url))
    assert [(r.ip, r.mac, r.machine, r.client_id) for r in rows] == [
        (LO_RESERVED, LO_MAC, "lo-uefi", "01" + LO_MAC.replace(":", ""))
    ]
