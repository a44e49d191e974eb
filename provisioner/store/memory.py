"""A behavioural in-memory store for unit tests: `MemoryStore` (see also broken.py).

`MemoryStore` keeps the same rules as `SqlStore` (compare-and-set transitions with their
event, claims that go stale, lease release, unique MACs/UUIDs/IPs through inventory apply,
secrets sealed with a real key) and passes the same contract suite
(tests/store/test_store.py).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from provisioner.events import Event, utcnow
from provisioner.store.base import MAX_EVENT_PAGE, Store, bmc_context, check_plain_fields, cluster_context
from provisioner.store.crypto import SecretBox
from provisioner.store.records import (
    BmcInfo,
    ClusterRecord,
    DiscoveredRecord,
    EventRecord,
    InventorySnapshot,
    InventoryWrite,
    MachineRecord,
    StoredBmc,
    TokenRecord,
)

__all__ = ["MemoryStore"]

_MACHINE_INVENTORY = (
    "cluster",
    "role",
    "uuid",
    "serial",
    "ip",
    "hostname",
    "install_disk",
    "arch",
    "labels",
    "spec",
)
_UNIQUE = ("uuid", "ip")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class MemoryStore:
    """A `Store` in dictionaries (one asyncio loop; every call is atomic)."""

    def __init__(self, box: SecretBox | None = None) -> None:
        self._box = box or SecretBox(secrets.token_bytes(32))
        self._machines: dict[str, MachineRecord] = {}
        self._updated: dict[str, datetime] = {}
        self._bmcs: dict[str, StoredBmc] = {}
        self._clusters: dict[str, dict[str, Any]] = {}
        self._cluster_secrets: dict[str, bytes] = {}
        self._events: list[EventRecord] = []
        self._next_id = 0
        self._discovered: dict[str, DiscoveredRecord] = {}
        self.leases: dict[str, dict[str, Any]] = {}
        """Lease rows by address (the DHCP lease store writes them in SQL; tests put them here)."""
        self.revoked_tokens: set[str] = set()
        """Machines whose config tokens `release_machine` revoked."""
        self.config_tokens: list[TokenRecord] = []
        """Config tokens in issue order (ConfigTokens writes them in SQL; tests put them here)."""

    @property
    def box(self) -> SecretBox:
        """Seals and opens secrets (a random key per store)."""
        return self._box

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        """Always answers."""

    # -- machines

    async def list_machines(self) -> list[MachineRecord]:
        """Every machine, by name."""
        return [self._machines[n] for n in sorted(self._machines)]

    async def get_machine(self, name: str) -> MachineRecord | None:
        """One machine, or None."""
        return self._machines.get(name)

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
        """Compare-and-set of the state, with its event."""
        check_plain_fields(fields)
        machine = self._machines.get(name)
        if machine is None or machine.state not in expect:
            return False
        now = utcnow()
        self._machines[name] = replace(
            machine,
            state=to_state,
            state_reason=reason,
            state_since=now,
            **fields,  # type: ignore[arg-type]
        )
        self._updated[name] = now
        self._add_event(event)
        return True

    async def update_machine(self, name: str, *, event: Event | None = None, **fields: Any) -> bool:  # noqa: ANN401
        """Set plain fields, never the state."""
        check_plain_fields(fields)
        machine = self._machines.get(name)
        if machine is None:
            return False
        self._machines[name] = replace(machine, **fields)
        self._updated[name] = utcnow()
        if event is not None:
            self._add_event(event)
        return True

    async def claim(self, name: str, instance: str, *, stale_after_s: float) -> bool:
        """Take the claim if free, ours, or not renewed for `stale_after_s`."""
        machine = self._machines.get(name)
        if machine is None:
            return False
        now = utcnow()
        stale = _aware(self._updated.get(name, now)) < now - timedelta(seconds=stale_after_s)
        if machine.owner not in (None, instance) and not stale:
            return False
        self._machines[name] = replace(machine, owner=instance)
        self._updated[name] = now
        return True

    async def release_machine(self, name: str, macs: Sequence[str], *, event: Event | None = None) -> int:
        """Release the machine's bound/offered leases and revoke its tokens."""
        released = 0
        for lease in self.leases.values():
            if lease["mac"] in macs and lease["state"] in ("bound", "offered"):
                lease["state"] = "released"
                released += 1
        self.revoked_tokens.add(name)
        self.config_tokens = [
            replace(t, revoked=True) if t.machine == name else t for t in self.config_tokens
        ]
        if event is not None:
            self._add_event(event)
        return released

    async def bmc_password_blob(self, name: str) -> bytes | None:
        """The BMC password ciphertext of a machine."""
        bmc = self._bmcs.get(name)
        return None if bmc is None else bmc.password_enc

    async def bmc_password(self, name: str) -> str | None:
        """The decrypted BMC password of a machine."""
        blob = await self.bmc_password_blob(name)
        return None if blob is None else self._box.open_text(blob, bmc_context(name))

    # -- clusters

    def _cluster(self, name: str) -> ClusterRecord:
        fields = self._clusters[name]
        return ClusterRecord(
            name=name,
            talos_version=fields["talos_version"],
            kubernetes_version=fields["kubernetes_version"],
            endpoint=fields["endpoint"],
            asset_set=fields.get("asset_set"),
            spec=dict(fields.get("spec", {})),
            has_secrets=name in self._cluster_secrets,
        )

    async def list_clusters(self) -> list[ClusterRecord]:
        """Every cluster, by name."""
        return [self._cluster(n) for n in sorted(self._clusters)]

    async def get_cluster(self, name: str) -> ClusterRecord | None:
        """One cluster, or None."""
        return self._cluster(name) if name in self._clusters else None

    async def put_cluster_secrets(self, name: str, bundle: bytes, *, actor: str = "cli") -> bool:
        """Seal and keep a cluster's bundle; False for an unknown cluster."""
        if name not in self._clusters:
            return False
        self._cluster_secrets[name] = self._box.seal(bundle, cluster_context(name))
        self._add_event(Event(kind="cluster.secrets", at=utcnow(), actor=actor, data={"cluster": name}))
        return True

    async def get_cluster_secrets(self, name: str) -> bytes | None:
        """The decrypted bundle, or None."""
        blob = self._cluster_secrets.get(name)
        return None if blob is None else self._box.open(blob, cluster_context(name))

    # -- inventory

    async def inventory_snapshot(self) -> InventorySnapshot:
        """The inventory as plain values (copies: callers cannot change the store)."""
        snap = InventorySnapshot()
        for name in sorted(self._clusters):
            snap.clusters[name] = copy.deepcopy(self._clusters[name])
        for name in sorted(self._machines):
            m = self._machines[name]
            fields = {c: copy.deepcopy(getattr(m, c)) for c in _MACHINE_INVENTORY}
            fields["macs"] = list(m.macs)
            snap.machines[name] = fields
            if name in self._bmcs:
                snap.bmcs[name] = copy.deepcopy(self._bmcs[name])
        return snap

    async def apply_inventory(
        self, plan: Callable[[InventorySnapshot], InventoryWrite], *, dry_run: bool
    ) -> InventoryWrite:
        """Plan on a snapshot, check uniqueness as the SQL constraints would, then write."""
        write = plan(await self.inventory_snapshot())
        for want in write.put_machines.values():
            check_plain_fields(want)  # apply never touches lifecycle state
        machines = dict(self._machines)
        for name in write.delete_machines:
            machines.pop(name, None)
        now = utcnow()
        for name, want in write.put_machines.items():
            values = {k: copy.deepcopy(v) for k, v in want.items() if k != "macs"}
            base = machines.get(name) or MachineRecord(name=name, macs=(), state_since=now)
            machines[name] = replace(base, macs=tuple(want["macs"]), **values)
        self._check_unique(machines)
        if dry_run:
            return write
        for name, fields in write.put_clusters.items():
            self._clusters[name] = copy.deepcopy(fields)
        for name in write.delete_machines:
            self._bmcs.pop(name, None)
            self._updated.pop(name, None)
        for name, stored in write.bmcs.items():
            if stored is None:
                self._bmcs.pop(name, None)
            else:
                self._bmcs[name] = copy.deepcopy(stored)
        self._machines = {
            n: replace(m, bmc=self._bmc_info(n)) if n in write.bmcs else m for n, m in machines.items()
        }
        for name in write.put_machines:
            self._updated[name] = now
        for name in write.delete_clusters:
            self._clusters.pop(name, None)
            self._cluster_secrets.pop(name, None)
        for event in write.events:
            self._add_event(event)
        return write

    def _bmc_info(self, name: str) -> BmcInfo | None:
        stored = self._bmcs.get(name)
        if stored is None:
            return None
        f = stored.fields
        return BmcInfo(
            driver=f["driver"],
            address=f["address"],
            port=f["port"],
            username=f["username"],
            password_ref=f["password_ref"],
            has_password=stored.password_enc is not None,
            options=dict(f["options"]),
        )

    @staticmethod
    def _check_unique(machines: Mapping[str, MachineRecord]) -> None:
        seen: dict[tuple[str, object], str] = {}
        for name, m in machines.items():
            keys = [("mac", mac) for mac in m.macs] + [(c, getattr(m, c)) for c in _UNIQUE if getattr(m, c)]
            for key in keys:
                if (other := seen.setdefault(key, name)) != name:
                    msg = f"unique constraint: {key[0]} {key[1]} of {name} already belongs to {other}"
                    raise ValueError(msg)

    # -- events

    def _add_event(self, event: Event) -> None:
        self._next_id += 1
        self._events.append(
            EventRecord(
                id=self._next_id,
                at=event.at,
                kind=event.kind,
                machine=event.machine,
                severity=event.severity.value,
                actor=event.actor,
                message=event.message,
                data=dict(event.data),
            )
        )

    async def append_events(self, events: Sequence[Event]) -> None:
        """Append events."""
        for event in events:
            self._add_event(event)

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
        out: list[EventRecord] = []
        for e in reversed(self._events):
            if (
                (machine is not None and e.machine != machine)
                or (
                    kind is not None
                    and not (e.kind.startswith(kind) if kind.endswith(".") else e.kind == kind)
                )
                or (severity is not None and e.severity != severity)
                or (since is not None and _aware(e.at) < _aware(since))
                or (before_id is not None and e.id >= before_id)
            ):
                continue
            out.append(e)
            if len(out) >= max(1, min(limit, MAX_EVENT_PAGE)):
                break
        return out

    async def prune_events(self, *, before: datetime, max_rows: int) -> int:
        """Delete events older than `before` and the oldest beyond `max_rows`."""
        kept = [e for e in self._events if _aware(e.at) >= _aware(before)]
        kept = kept[-max_rows:] if max_rows > 0 else []
        deleted = len(self._events) - len(kept)
        self._events = kept
        return deleted

    async def count_events(self) -> int:
        """How many events."""
        return len(self._events)

    # -- the console's change feed and token history

    async def machines_changed_since(
        self, mark: datetime | None
    ) -> tuple[list[MachineRecord], datetime | None]:
        """Machines updated after `mark`, by name, and the new mark; no mark: none, the newest."""
        stamps = {n: _aware(t) for n, t in self._updated.items() if n in self._machines}
        if mark is None:
            return [], max(stamps.values(), default=None)
        after = _aware(mark)
        names = sorted(n for n, t in stamps.items() if t > after)
        if not names:
            return [], mark
        return [self._machines[n] for n in names], max(stamps[n] for n in names)

    async def events_after(self, last_id: int | None, *, limit: int = 500) -> tuple[list[EventRecord], int]:
        """Events after `last_id`, oldest first, and the new cursor; no cursor: none, the newest id."""
        if last_id is None:
            return [], (self._events[-1].id if self._events else 0)
        fresh = [e for e in self._events if e.id > last_id][: max(1, min(limit, MAX_EVENT_PAGE))]
        return fresh, (fresh[-1].id if fresh else last_id)

    async def list_config_tokens(self, machine: str, *, limit: int = 10) -> list[TokenRecord]:
        """A machine's config tokens, newest first."""
        return [t for t in reversed(self.config_tokens) if t.machine == machine][:limit]

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
        """Upsert a discovered machine; True when new (the caller emits the event).

        With `limit`, a new row first evicts the least recently seen rows beyond it.
        """
        now = utcnow()
        row = self._discovered.get(mac)
        if row is None:
            if limit is not None:
                by_age = sorted(self._discovered.values(), key=lambda r: r.last_seen)
                for old in by_age[: max(0, len(by_age) - (limit - 1))]:
                    del self._discovered[old.mac]
            self._discovered[mac] = DiscoveredRecord(
                mac=mac,
                uuid=uuid,
                serial=serial,
                arch=arch,
                vendor_class=vendor_class[:255],
                source=source,
                seen_count=1,
                first_seen=now,
                last_seen=now,
            )
            return True
        self._discovered[mac] = replace(
            row,
            last_seen=now,
            seen_count=row.seen_count + 1,
            uuid=uuid or row.uuid,
            serial=serial or row.serial,
            arch=arch or row.arch,
        )
        return False

    async def list_discovered(self) -> list[DiscoveredRecord]:
        """Most recently seen first."""
        return sorted(self._discovered.values(), key=lambda r: r.last_seen, reverse=True)

    async def list_leases(self) -> list[dict[str, Any]]:
        """Every lease as a plain dict, by address."""
        return [
            {k: self.leases[ip].get(k) for k in ("ip", "mac", "hostname", "state", "expires_at", "machine")}
            for ip in sorted(self.leases)
        ]

    async def leased_addresses(self, *, now: datetime) -> dict[str, str]:
        """Address -> machine of bound, unexpired leases that name their machine."""
        out: dict[str, str] = {}
        for ip, lease in sorted(self.leases.items()):
            expires = lease.get("expires_at")
            if isinstance(expires, str):
                expires = datetime.fromisoformat(expires)
            if lease.get("state") != "bound" or not lease.get("machine") or not isinstance(expires, datetime):
                continue  # as in SQL: a lease without an expiry compares as unknown, never as live
            if _aware(expires) > _aware(now):
                out[ip] = str(lease["machine"])
        return out


def _conforms(memory: MemoryStore) -> Store:
    """Mypy checks here that the fake is a `Store`."""
    return memory
