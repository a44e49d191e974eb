"""Lease storage: the `LeaseStore` protocol, an in-memory fake, a broken fake.

The SQL implementation (`SqlLeaseStore`, SQLite and PostgreSQL) lives with the other SQL
code in provisioner/store/leases.py; the daemon builds it and passes it to `DhcpService`.

Theory of operation
-------------------
The server core keeps every lease in memory (`book.LeaseBook`); the store only makes
them durable and lets several instances share them. Three calls:

- `load()` at start: every row, skipping and counting rows that fail the same checks
  the core applies on write (docs/threats.md G2), so one poisoned row cannot stop a restart.
- `commit(leases)`: write a batch in one transaction and say, per lease, whether it won
  its address. The unique(ip) constraint decides races between instances: a row is
  inserted, or updated only when it already belongs to the same client or no longer
  holds the address (released, expired, quarantine over). "Same client" is the binding
  key of `binding.py` (an inventory machine's MAC across client identifiers, else RFC
  2131 §4.2), written once there as `LEASE_UPSERT_WHERE`. This is one
  `INSERT ... ON CONFLICT (ip) DO UPDATE ... WHERE ... RETURNING ip` statement, which
  SQLite (3.35+) and PostgreSQL both run atomically.
- `changed_since(t)`: rows another instance wrote, for the periodic cache sync.

`GroupCommitter` batches the commits of many clients: callers await their lease; one task
drains the queue, commits everything pending in one transaction, then wakes them all, so
the cost of a durable commit (an fsync) is shared (docs/threats.md G1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from provisioner.dhcp.allocate import sanitize_hostname
from provisioner.dhcp.book import Lease, LeaseState
from provisioner.model import normalize_mac
from provisioner.tasks import cancel_and_wait

__all__ = [
    "BrokenLeaseStore",
    "GroupCommitter",
    "LeaseStore",
    "LoadResult",
    "MemoryLeaseStore",
    "SharedLeaseStore",
    "StoreError",
    "validate_lease",
]

log = logging.getLogger(__name__)
MAX_BATCH = 512
COMMIT_TIMEOUT_S = 5.0  # docs/threats.md G4: a slow database never holds an ACK longer than this


class StoreError(RuntimeError):
    """The lease store could not be written or read."""


class LoadResult:
    """Leases read at start, and how many rows were skipped as invalid."""

    def __init__(self, leases: list[Lease], bad_rows: int) -> None:
        """Hold the result."""
        self.leases = leases
        self.bad_rows = bad_rows


def validate_lease(lease: Lease) -> bool:
    """The checks applied to every lease on write and on load (docs/threats.md G2)."""
    try:
        ipaddress.IPv4Address(lease.ip)
        if normalize_mac(lease.mac) != lease.mac:
            return False
    except ValueError:
        return False
    if lease.hostname and sanitize_hostname(lease.hostname.encode("ascii", "replace")) != lease.hostname:
        return False
    if len(lease.client_id) > 512 or any(c not in "0123456789abcdef" for c in lease.client_id):
        return False
    return lease.state in LeaseState.__members__.values()


class LeaseStore(Protocol):
    """Where leases become durable."""

    async def load(self) -> LoadResult:
        """Every valid lease; bad rows skipped and counted."""

    async def commit(self, leases: Sequence[Lease], now: float) -> list[bool]:
        """Write `leases` in one transaction; per lease, True when it holds its address."""

    async def changed_since(self, since: float, *, exclude_instance: str | None = None) -> list[Lease]:
        """Leases written at or after `since` (epoch seconds) by instances other than one."""

    async def close(self) -> None:
        """Release resources."""


@runtime_checkable
class SharedLeaseStore(LeaseStore, Protocol):
    """A store several instances share: a lost commit can ask who won the address."""

    async def fetch(self, ip: str) -> Lease | None:
        """The stored lease of `ip`, if any."""


def _wins(existing: Lease, new: Lease, now: float) -> bool:
    # `binding.LEASE_UPSERT_WHERE` in Python: Lease.key is `binding.binding_key`.
    return existing.key == new.key or not existing.holds(now)


class MemoryLeaseStore:
    """A behavioural fake with the same conflict rule as the SQL store."""

    def __init__(self, leases: Iterable[Lease] = ()) -> None:
        """Start with `leases`."""
        self.rows: dict[str, Lease] = {lease.ip: lease for lease in leases}
        self.written: dict[str, float] = {}
        self.commits = 0

    async def load(self) -> LoadResult:
        """Every valid row."""
        good = [lease for lease in self.rows.values() if validate_lease(lease)]
        return LoadResult(good, len(self.rows) - len(good))

    async def commit(self, leases: Sequence[Lease], now: float) -> list[bool]:
        """Apply the conflict rule to each lease."""
        self.commits += 1
        results = []
        for lease in leases:
            existing = self.rows.get(lease.ip)
            ok = existing is None or _wins(existing, lease, now)
            if ok:
                self.rows[lease.ip] = lease
                self.written[lease.ip] = now
            results.append(ok)
        return results

    async def changed_since(self, since: float, *, exclude_instance: str | None = None) -> list[Lease]:
        """Rows written at or after `since`."""
        return [
            self.rows[ip]
            for ip, t in self.written.items()
            if t >= since and self.rows[ip].instance != exclude_instance
        ]

    async def close(self) -> None:
        """Nothing to release."""


class BrokenLeaseStore(MemoryLeaseStore):
    """Raises on every write: the error path (no ACK may go out)."""

    async def commit(self, leases: Sequence[Lease], now: float) -> list[bool]:  # noqa: ARG002
        """Always fails."""
        msg = "database unavailable"
        raise StoreError(msg)


class GroupCommitter:
    """Batch lease writes: one transaction for everything pending, then wake all waiters."""

    def __init__(self, store: LeaseStore, timeout_s: float = COMMIT_TIMEOUT_S) -> None:
        """Commit through `store`; a commit slower than `timeout_s` counts as failed."""
        self.store = store
        self.timeout_s = timeout_s
        self._queue: list[tuple[Lease, asyncio.Future[bool]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.largest_batch = 0

    def start(self) -> None:
        """Start the committing task."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Flush what is queued and stop."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._queue:
            await self._flush(self._queue, _now())
            self._queue = []

    def submit(self, lease: Lease) -> asyncio.Future[bool]:
        """Queue `lease`; the future says whether it won its address (exception: not durable)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((lease, future))
        self._wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._flush(batch, _now())

    async def _flush(self, batch: list[tuple[Lease, asyncio.Future[bool]]], now: float) -> None:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        try:
            results = await asyncio.wait_for(
                self.store.commit([lease for lease, _ in batch], now), self.timeout_s
            )
        except Exception as exc:  # also TimeoutError: every waiter must learn of the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreError(str(exc)))
            return
        for (_, future), ok in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(ok)


def _now() -> float:
    return time.time()
