"""The in-memory lease book: leases, held offers, quarantine, and address allocation.

Theory of operation
-------------------
The book is the hot-path view of the lease table; the database is written through
(`LeaseStore.commit`) but never read on the way to an answer. Pure: every method takes
`now` (seconds since the epoch, because leases outlive the process).

An address is *taken* when one of these holds, checked in this order:
- a bound lease that has not expired (RFC 2131 §4.3.1: a server must not reuse it);
- a declined address still in quarantine (RFC 2131 §4.3.3 DHCPDECLINE);
- an offer held for another client (held briefly: `offer_hold_s`);
- an inventory reservation for another machine (reservations win over pools).

Clients are keyed by `binding.binding_key`: an inventory machine by its MAC whatever
option 61 it sends (firmware, iPXE and the OS are one binding), anyone else by option 61
when sent and by chaddr otherwise (RFC 2131 §4.2, RFC 6842). A client's last address is
remembered after release or expiry so that it "gets the same address back" while nobody
else took it (RFC 2131 §4.3.1 item 2).

Memory is bounded: per-client state is replaced, never appended (docs/threats.md A13), offers
are capped (A19), and the quarantine is capped (A20).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from provisioner.dhcp.binding import binding_key

__all__ = ["Lease", "LeaseBook", "LeaseState", "Pool", "int_to_ip", "ip_to_int"]

DEFAULT_OFFER_HOLD_S = 30.0
DEFAULT_MAX_OFFERS = 20_000
DEFAULT_MAX_QUARANTINE = 1_024
EXHAUSTED_RECHECK_S = 1.0


class LeaseState(enum.StrEnum):
    """`LeaseRow.state` values."""

    OFFERED = "offered"
    BOUND = "bound"
    RELEASED = "released"
    DECLINED = "declined"
    EXPIRED = "expired"


def ip_to_int(text: str) -> int:
    """Dotted quad to int; ValueError for anything else (hot path: no ipaddress objects)."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(text)
    a, b, c, d = (int(p) for p in parts)
    if not (0 <= a <= 255 and 0 <= b <= 255 and 0 <= c <= 255 and 0 <= d <= 255):
        raise ValueError(text)
    return a << 24 | b << 16 | c << 8 | d


def int_to_ip(value: int) -> str:
    """Int to dotted quad."""
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease, as cached and as stored (times are epoch seconds)."""

    ip: str
    mac: str
    client_id: str = ""
    """Option 61 as hex, or empty; with `mac` it identifies the client."""
    hostname: str = ""
    state: LeaseState = LeaseState.BOUND
    expires_at: float = 0.0
    machine: str | None = None
    """The inventory machine the client was recognised as; its leases are keyed by MAC."""
    instance: str = ""

    @property
    def key(self) -> str:
        """The binding this lease belongs to (`binding.binding_key`)."""
        return binding_key(self.mac, self.client_id, self.machine)

    def holds(self, now: float) -> bool:
        """True while this record keeps the address from anyone else."""
        return self.state in (LeaseState.BOUND, LeaseState.DECLINED) and self.expires_at > now


@dataclass(slots=True)
class Pool:
    """A subnet's dynamic range as ints, with a moving allocation cursor."""

    first: int
    last: int
    cursor: int
    exhausted_until: float = 0.0

    @classmethod
    def from_range(cls, first: str, last: str, offset: int = 0) -> Pool:
        """A pool over [first, last]; `offset` spreads instances sharing a database."""
        lo, hi = ip_to_int(first), ip_to_int(last)
        return cls(lo, hi, lo + offset % (hi - lo + 1))

    def __len__(self) -> int:
        return self.last - self.first + 1


class LeaseBook:
    """Leases by address and by client, held offers, and the allocator."""

    def __init__(
        self,
        *,
        offer_hold_s: float = DEFAULT_OFFER_HOLD_S,
        max_offers: int = DEFAULT_MAX_OFFERS,
        max_quarantine: int = DEFAULT_MAX_QUARANTINE,
    ) -> None:
        """An empty book."""
        self.offer_hold_s = offer_hold_s
        self.max_offers = max_offers
        self.max_quarantine = max_quarantine
        self.by_ip: dict[str, Lease] = {}
        self.by_key: dict[str, str] = {}
        self._offers: dict[str, tuple[str, float]] = {}  # client key -> (ip, until)
        self._offered_ips: dict[str, str] = {}  # ip -> client key
        self._quarantined: dict[str, float] = {}  # ip -> until

    def __len__(self) -> int:
        return len(self.by_ip)

    # -- leases ------------------------------------------------------------------------

    def load(self, leases: Iterable[Lease]) -> None:
        """Fill the book from the store (last record per address wins)."""
        for lease in leases:
            self.put(lease)

    def put(self, lease: Lease) -> Lease | None:
        """Record `lease`; return what it replaced at that address."""
        old = self.by_ip.get(lease.ip)
        if old is not None and old.key != lease.key and self.by_key.get(old.key) == old.ip:
            del self.by_key[old.key]
        previous_ip = self.by_key.get(lease.key)
        if previous_ip is not None and previous_ip != lease.ip:
            stale = self.by_ip.get(previous_ip)
            if stale is not None and stale.key == lease.key:
                del self.by_ip[previous_ip]
        self.by_ip[lease.ip] = lease
        self.by_key[lease.key] = lease.ip
        if lease.state == LeaseState.DECLINED:
            self._quarantine(lease.ip, lease.expires_at)
        self.drop_offer(lease.key)
        return old

    def restore(self, lease: Lease, previous: Lease | None) -> None:
        """Undo `put(lease)` after its commit failed."""
        if self.by_ip.get(lease.ip) == lease:
            del self.by_ip[lease.ip]
            if self.by_key.get(lease.key) == lease.ip:
                del self.by_key[lease.key]
        if previous is not None:
            self.put(previous)

    def lease_of(self, key: str) -> Lease | None:
        """The client's latest lease record, whatever its state."""
        ip = self.by_key.get(key)
        return None if ip is None else self.by_ip.get(ip)

    def holder(self, ip: str, now: float) -> str | None:
        """Who keeps `ip` from being handed out: a client key, `declined`, or None."""
        until = self._quarantined.get(ip)
        if until is not None:
            if until > now:
                return "declined"
            del self._quarantined[ip]
        lease = self.by_ip.get(ip)
        if lease is not None and lease.holds(now):
            return lease.key
        key = self._offered_ips.get(ip)
        if key is not None:
            offer = self._offers.get(key)
            if offer is not None and offer[0] == ip and offer[1] > now:
                return key
            self._forget_offer_ip(ip)
        return None

    # -- offers ------------------------------------------------------------------------

    def hold_offer(self, key: str, ip: str, now: float) -> bool:
        """Reserve `ip` for `key` briefly; False when the offer table is full (A19)."""
        if key not in self._offers and len(self._offers) >= self.max_offers:
            self.expire_offers(now)
            if len(self._offers) >= self.max_offers:
                return False
        self.drop_offer(key)
        self._offers[key] = (ip, now + self.offer_hold_s)
        self._offered_ips[ip] = key
        return True

    def offer_of(self, key: str, now: float) -> str | None:
        """The address held for `key`, if the offer is still fresh."""
        offer = self._offers.get(key)
        if offer is None or offer[1] <= now:
            return None
        return offer[0]

    def drop_offer(self, key: str) -> None:
        """Forget the offer held for `key` (declined by choosing another server, or used)."""
        offer = self._offers.pop(key, None)
        if offer is not None and self._offered_ips.get(offer[0]) == key:
            del self._offered_ips[offer[0]]

    def _forget_offer_ip(self, ip: str) -> None:
        key = self._offered_ips.pop(ip, None)
        if key is not None and self._offers.get(key, ("",))[0] == ip:
            del self._offers[key]

    @property
    def offers_held(self) -> int:
        """How many offers are outstanding."""
        return len(self._offers)

    # -- quarantine --------------------------------------------------------------------

    def _quarantine(self, ip: str, until: float) -> None:
        if ip not in self._quarantined and len(self._quarantined) >= self.max_quarantine:
            # Bounded (A20): the oldest quarantine entry gives way to the newest.
            del self._quarantined[next(iter(self._quarantined))]
        self._quarantined[ip] = until

    def quarantined(self, ip: str, now: float) -> bool:
        """True while `ip` is quarantined after a DECLINE."""
        until = self._quarantined.get(ip)
        return until is not None and until > now

    # -- housekeeping and allocation ---------------------------------------------------

    def expire_offers(self, now: float) -> None:
        """Drop lapsed offers, oldest first; stops at the first live one.

        Offers are (re)inserted with the same hold time, so dict order is expiry order and
        this costs O(expired), not O(table): a full table under a flood stays cheap (A19).
        """
        while self._offers:
            key, (ip, until) = next(iter(self._offers.items()))
            if until > now:
                return
            del self._offers[key]
            if self._offered_ips.get(ip) == key:
                del self._offered_ips[ip]

    def expire(self, now: float) -> None:
        """Drop stale offers and quarantine entries."""
        self.expire_offers(now)
        for ip, until in list(self._quarantined.items()):
            if until <= now:
                del self._quarantined[ip]

    def next_offer_expiry(self) -> float | None:
        """When the oldest held offer lapses (dict order is insertion order)."""
        for _ip, until in self._offers.values():
            return until
        return None

    def allocate(self, pool: Pool, key: str, now: float, reserved: frozenset[str]) -> str | None:
        """The next free pool address for `key`, or None when the pool is exhausted."""
        if pool.exhausted_until > now:
            return None
        size = len(pool)
        value = pool.cursor
        for _ in range(size):
            if value > pool.last:
                value = pool.first
            ip = int_to_ip(value)
            value += 1
            if ip in reserved:
                continue
            holder = self.holder(ip, now)
            if holder is None or holder == key:
                pool.cursor = value
                return ip
        # A full scan costs O(pool); under a starvation flood (A19) do it at most once
        # per EXHAUSTED_RECHECK_S.
        pool.exhausted_until = now + EXHAUSTED_RECHECK_S
        return None

    def released(self, lease: Lease, now: float) -> Lease:
        """The record of `lease` given back (RFC 2131 §4.4.6): kept for "same address"."""
        return replace(lease, state=LeaseState.RELEASED, expires_at=now)
