"""`Store`: the narrow async interface every subsystem uses for machines, clusters, events.

Implementations: `SqlStore` (provisioner/store/repository.py, SQLAlchemy on SQLite or
PostgreSQL) and, for unit tests, `MemoryStore` (memory.py) and `BrokenStore` (broken.py,
every call raises). `MemoryStore` and `SqlStore` on SQLite and on PostgreSQL pass one
contract suite (tests/store/test_store.py). Callers get frozen records, never rows. Each call is one
transaction; a state change and its event row are written together.

Subsystems should depend on the smallest Protocol that serves them, declared next to the
consumer (e.g. `reconciler.ReconcilerStore`, `inventory.sync.InventoryStore`); this one
is the sum of them, what a store implementation must offer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from provisioner.events import Event
from provisioner.store.crypto import SecretBox
from provisioner.store.records import (
    ClusterRecord,
    DiscoveredRecord,
    EventRecord,
    InventorySnapshot,
    InventoryWrite,
    MachineRecord,
    TokenRecord,
)

__all__ = ["MAX_EVENT_PAGE", "STATE_FIELDS", "Store", "bmc_context", "check_plain_fields", "cluster_context"]

MAX_EVENT_PAGE = 1000

STATE_FIELDS = frozenset({"state", "state_reason", "state_since"})
"""The lifecycle's columns: written only through `write_transition` (lifecycle.move)."""


def check_plain_fields(fields: Mapping[str, object]) -> None:
    """Refuse the lifecycle's columns outside `write_transition` (ValueError)."""
    if clash := STATE_FIELDS & set(fields):
        msg = f"machine state is written only by the lifecycle (lifecycle.move), not as {sorted(clash)}"
        raise ValueError(msg)


def bmc_context(machine: str) -> str:
    """The associated-data label binding a BMC password ciphertext to its machine."""
    return f"bmc:{machine}"


def cluster_context(cluster: str) -> str:
    """The associated-data label binding a secrets bundle ciphertext to its cluster."""
    return f"cluster:{cluster}"


class Store(Protocol):
    """Async access to machines, clusters, events, discovered machines and secrets."""

    @property
    def box(self) -> SecretBox:
        """Seals and opens secrets at rest (the key is kept outside the database)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query (health checks)."""
        ...

    # -- machines
    async def list_machines(self) -> list[MachineRecord]:
        """Every machine, by name."""
        ...

    async def get_machine(self, name: str) -> MachineRecord | None:
        """One machine, or None."""
        ...

    async def write_transition(
        self,
        name: str,
        to_state: str,
        *,
        expect: Sequence[str],
        reason: str,
        event: Event,
        fields: Mapping[str, object],
    ) -> bool:
        """Compare-and-set of the state with its event (only `lifecycle.move` calls this)."""
        ...

    async def update_machine(self, name: str, *, event: Event | None = None, **fields: Any) -> bool:  # noqa: ANN401
        """Set plain fields (desired, attempts, owner, last_seen, ...), never the state."""
        ...

    async def claim(self, name: str, instance: str, *, stale_after_s: float) -> bool:
        """Take (or keep) the right to drive a machine's run."""
        ...

    async def release_machine(self, name: str, macs: Sequence[str], *, event: Event | None = None) -> int:
        """Release the machine's leases and revoke its config tokens; how many leases."""
        ...

    async def bmc_password_blob(self, name: str) -> bytes | None:
        """The BMC password ciphertext of a machine."""
        ...

    async def bmc_password(self, name: str) -> str | None:
        """The decrypted BMC password of a machine, for one call. Never log the result."""
        ...

    # -- clusters
    async def list_clusters(self) -> list[ClusterRecord]:
        """Every cluster, by name."""
        ...

    async def get_cluster(self, name: str) -> ClusterRecord | None:
        """One cluster, or None."""
        ...

    async def put_cluster_secrets(self, name: str, bundle: bytes, *, actor: str = "cli") -> bool:
        """Store a cluster's secrets bundle encrypted; False if the cluster does not exist."""
        ...

    async def get_cluster_secrets(self, name: str) -> bytes | None:
        """The decrypted secrets bundle of a cluster, or None."""
        ...

    # -- inventory
    async def inventory_snapshot(self) -> InventorySnapshot:
        """The inventory part of the database as plain values (export)."""
        ...

    async def apply_inventory(
        self, plan: Callable[[InventorySnapshot], InventoryWrite], *, dry_run: bool
    ) -> InventoryWrite:
        """One transaction: snapshot, `plan` it, write the result (rolled back for a dry run)."""
        ...

    # -- events
    async def append_events(self, events: Sequence[Event]) -> None:
        """Insert events in one transaction."""
        ...

    async def list_events(
        self,
        *,
        machine: str | None = None,
        kind: str | None = None,
        severity: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[EventRecord]:
        """Newest first; a `kind` ending in "." selects a family; page with `before_id`."""
        ...

    async def prune_events(self, *, before: datetime, max_rows: int) -> int:
        """Event retention: delete rows older than `before` and the oldest beyond `max_rows`."""
        ...

    async def count_events(self) -> int:
        """How many events the log holds."""
        ...

    # -- the console: its change feed and a machine's token history
    async def machines_changed_since(
        self, mark: datetime | None
    ) -> tuple[list[MachineRecord], datetime | None]:
        """Machines changed (any write) after `mark`, by name, and the new mark.

        `None` starts a feed: no machines, and the mark of the newest change so far.
        """
        ...

    async def events_after(self, last_id: int | None, *, limit: int = 500) -> tuple[list[EventRecord], int]:
        """Up to `limit` events with an id after `last_id`, oldest first, and the new cursor.

        `None` starts a feed: no events, and the newest id so far (0 for an empty log, so the
        first events are not skipped).
        """
        ...

    async def list_config_tokens(self, machine: str, *, limit: int = 10) -> list[TokenRecord]:
        """A machine's config tokens, newest first (issued, expiry, used, revoked; no hashes)."""
        ...

    # -- discovered machines and leases
    async def record_discovered(
        self,
        mac: str,
        *,
        uuid: str | None = None,
        serial: str | None = None,
        arch: str | None = None,
        vendor_class: str = "",
        source: str = "",
        limit: int | None = None,
    ) -> bool:
        """Upsert a Discovered machine (first/last seen, count); True when it is new.

        The caller emits `machine.discovered`. With `limit`, a new row first evicts the
        least recently seen rows beyond it.
        """
        ...

    async def list_discovered(self) -> list[DiscoveredRecord]:
        """Every discovered machine, most recently seen first."""
        ...

    async def list_leases(self) -> list[dict[str, Any]]:
        """Every lease as a plain dict (ip, mac, hostname, state, expires_at, machine), by address."""
        ...

    async def leased_addresses(self, *, now: datetime) -> dict[str, str]:
        """Address -> machine for every bound lease unexpired at `now` that names its machine.

        Telemetry attributes what a node sends by its source address (telemetry/service.py).
        """
        ...
