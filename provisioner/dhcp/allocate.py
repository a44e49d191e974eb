"""Which address a client gets, and whether an address it asks for is acceptable.

Theory of operation
-------------------
RFC 2131 §4.3.1 lists, in order of preference, the address a server offers:
1. the client's current binding, 2. its previous address, 3. the requested address
(option 50) if valid and free, 4. a new address from the pool. We put the inventory
reservation above all of them: a machine in the inventory with an address in the
subnet always gets that address, and the pool never hands a reserved address to anyone
else ("reservations win over pools"). "Free for the client" compares binding keys
(`binding.py`): for an inventory machine that is its MAC, so the firmware (no option 61),
iPXE (option 61 = 01+MAC) and the installed OS (its own option 61) all find the
reservation theirs, in every order and on subnets without a pool.

`acceptable` is the REQUEST-side check (RFC 2131 §4.3.2): the address must be in the
subnet chosen for the client, be the machine's reservation if it has one, not be another
machine's reservation, not be held by another client, and be either in the pool or the
client's own binding. Anything else is NAKed.
"""

from __future__ import annotations

import re
import uuid as uuid_mod
from dataclasses import dataclass

from provisioner.dhcp.binding import binding_key
from provisioner.dhcp.book import LeaseBook
from provisioner.dhcp.codec import DhcpPacket, swap_uuid
from provisioner.dhcp.config import ServerConfig, Subnet
from provisioner.matching import MachineIndex, RequestLabels, labels_from_raw
from provisioner.model import MachineSummary

__all__ = ["Allocator", "ClientView", "client_view", "sanitize_hostname"]

_ZERO = "0.0.0.0"
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?")
MAX_CLIENT_ID_BYTES = 255  # one option's worth; bounds the lease key (docs/threats.md A2)


def sanitize_hostname(raw: bytes | None) -> str:
    """Option 12 as a safe label, or "" (docs/threats.md A3, A16; the same check runs on load)."""
    if not raw or len(raw) > 63:
        return ""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return ""
    return text if _HOSTNAME.fullmatch(text) else ""


@dataclass(frozen=True, slots=True)
class ClientView:
    """The normalised identity of a requesting client."""

    mac: str
    client_id: str
    hostname: str
    requested_ip: str | None
    labels: RequestLabels
    machine: str | None = None
    """The inventory machine these labels matched (set by the server after matching)."""

    @property
    def key(self) -> str:
        """Lease key (`binding.binding_key`): the MAC of an inventory machine, else RFC 2131 §4.2."""
        return binding_key(self.mac, self.client_id, self.machine)


def client_view(request: DhcpPacket) -> ClientView | None:
    """Identity of `request`'s client; None when chaddr is not an Ethernet MAC (A7)."""
    mac = request.mac
    if mac is None:
        return None
    cid = request.client_id
    uuid_text = None
    guid = request.client_uuid
    if guid is not None:
        # docs/testing.md: the first three fields arrive little-endian; swap before matching.
        uuid_text = str(uuid_mod.UUID(bytes=swap_uuid(guid)))
    return ClientView(
        mac=mac,
        client_id=cid[:MAX_CLIENT_ID_BYTES].hex() if cid is not None else "",
        hostname=sanitize_hostname(request.hostname),
        requested_ip=request.requested_ip,
        # chaddr.hex(":") is already the canonical MAC spelling; only the UUID needs checks.
        labels=RequestLabels(mac=mac, uuid=labels_from_raw(uuid=uuid_text).uuid if uuid_text else None),
    )


class Allocator:
    """Address choice over a `LeaseBook` for one configuration."""

    def __init__(self, config: ServerConfig, book: LeaseBook) -> None:
        """Bind to `config` and `book`."""
        self.config = config
        self.book = book
        self._reserved_for: int | None = None
        self._reserved: frozenset[str] = frozenset()

    def reserved(self, index: MachineIndex) -> frozenset[str]:
        """Every inventory address (cached per index object: the index is immutable)."""
        if self._reserved_for != id(index):
            self._reserved = frozenset(m.ip for m in index.all() if m.ip)
            self._reserved_for = id(index)
        return self._reserved

    def subnet_of(self, request: DhcpPacket) -> Subnet | None:
        """RFC 2131 §4.3.1: by giaddr when relayed, else by ciaddr / our interface."""
        if request.giaddr != _ZERO:
            return self.config.subnet_for(request.giaddr)
        if request.ciaddr != _ZERO:
            # RENEWING clients unicast straight to us, also from subnets behind relays
            # (RFC 2131 §4.4.5); an address in none of our subnets gets nothing (A14).
            return self.config.subnet_for(request.ciaddr)
        return self.config.subnet_for(self.config.server_ip)

    def _free_for(self, ip: str, key: str, now: float) -> bool:
        holder = self.book.holder(ip, now)
        return holder is None or holder == key

    def choose(
        self,
        view: ClientView,
        subnet: Subnet,
        machine: MachineSummary | None,
        reserved: frozenset[str],
        now: float,
    ) -> str | None:
        """The address to offer `view`, or None when there is none (pool exhausted)."""
        key = view.key
        if (
            machine is not None
            and machine.ip
            and subnet.contains(machine.ip)
            and self._free_for(machine.ip, key, now)
        ):
            return machine.ip
        offered = self.book.offer_of(key, now)
        if offered is not None and subnet.contains(offered):
            return offered
        lease = self.book.lease_of(key)
        for candidate in (lease.ip if lease is not None else None, view.requested_ip):
            if (
                candidate is not None
                and candidate not in reserved
                and subnet.in_pool(candidate)
                and self._free_for(candidate, key, now)
            ):
                return candidate
        if subnet.pool is None:
            return None
        return self.book.allocate(subnet.pool, key, now, reserved)

    def acceptable(
        self,
        view: ClientView,
        ip: str,
        subnet: Subnet,
        machine: MachineSummary | None,
        reserved: frozenset[str],
        now: float,
    ) -> bool:
        """May `view` have `ip`? (RFC 2131 §4.3.2; module docstring)."""
        if not subnet.contains(ip):
            return False
        if machine is not None and machine.ip and subnet.contains(machine.ip):
            return ip == machine.ip and self._free_for(ip, view.key, now)
        if ip in reserved or not self._free_for(ip, view.key, now):
            return False
        if subnet.in_pool(ip):
            return True
        lease = self.book.lease_of(view.key)
        return lease is not None and lease.ip == ip
