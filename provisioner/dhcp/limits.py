"""Bounded per-client state for the DHCP core: token buckets and a discovery recorder.

Pure (time is passed in). Both tables are capped and evict their oldest entry, so a flood
of random MACs costs a fixed amount of memory (docs/threats.md A13, A19, A22).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from provisioner.dhcp.codec import DhcpPacket

__all__ = ["DiscoveredMachine", "RateLimiter", "RecentSet", "TokenBucket", "discovered_machine"]


@dataclass(frozen=True, slots=True)
class DiscoveredMachine:
    """A PXE client that is not in the inventory, with what it sent."""

    mac: str
    uuid: str | None
    arch: int | None
    vendor_class: str
    user_class: str
    at: datetime


def discovered_machine(request: DhcpPacket, mac: str, uuid: str | None, now: float) -> DiscoveredMachine:
    """What an unknown PXE client told us, with client strings escaped and bounded (A16)."""
    arches = request.client_arches
    return DiscoveredMachine(
        mac=mac,
        uuid=uuid,
        arch=arches[0] if arches else None,
        vendor_class=request.vendor_class.decode("ascii", "backslashreplace")[:255],
        user_class=b",".join(request.user_classes).decode("ascii", "backslashreplace")[:255],
        at=datetime.fromtimestamp(now, UTC),
    )


class TokenBucket:
    """`rate` tokens a second up to `burst`; each allowed event takes one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """True (and one token spent) when the event is allowed."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RateLimiter:
    """One bucket per key, at most `max_keys` of them (oldest evicted)."""

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        """Configure the buckets."""
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Take a token from `key`'s bucket."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def prune(self, older_than: float) -> None:
        """Forget buckets idle since before `older_than` (they would be full anyway)."""
        for key in [k for k, b in self._buckets.items() if b.stamp < older_than]:
            del self._buckets[key]


class RecentSet:
    """Keys seen within `window` seconds, at most `max_keys` (for once-a-minute reports)."""

    def __init__(self, window: float, max_keys: int) -> None:
        """Configure the window and the cap."""
        self.window = window
        self.max_keys = max_keys
        self._seen: dict[str, float] = {}

    def first_in_window(self, key: str, now: float) -> bool:
        """True when `key` was not seen in the last `window` seconds (and mark it seen)."""
        last = self._seen.get(key)
        if last is not None and last > now - self.window:
            return False
        self._seen.pop(key, None)
        if len(self._seen) >= self.max_keys:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = now
        return True

    def prune(self, now: float) -> None:
        """Forget keys older than the window."""
        for key in [k for k, t in self._seen.items() if t <= now - self.window]:
            del self._seen[key]
