"""`SqlStore`: the `Store` (provisioner/store/base.py) on SQLAlchemy, SQLite or PostgreSQL.

No ORM object leaves this module: callers get frozen records. Each method is one
transaction. A state change and its event row are written in the same transaction, so
the audit log never misses a transition that happened (and never records one that did not).
`Store` is re-exported here for the modules that type against it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from provisioner.events import Event, utcnow
from provisioner.secretfile import private_dir
from provisioner.store import console_sql
from provisioner.store.base import MAX_EVENT_PAGE, Store, bmc_context, check_plain_fields, cluster_context
from provisioner.store.crypto import SecretBox, load_or_create_key
from provisioner.store.db import make_engine
from provisioner.store.inventory_sql import apply_write, read_snapshot
from provisioner.store.records import (
    BmcInfo,
    ClusterRecord,
    DiscoveredRecord,
    EventRecord,
    InventorySnapshot,
    InventoryWrite,
    MachineRecord,
    TokenRecord,
)
from provisioner.store.tables import (
    BmcRow,
    ClusterRow,
    ConfigTokenRow,
    DiscoveredRow,
    EventRow,
    LeaseRow,
    MachineRow,
    NicRow,
    event_row,
)

__all__ = ["SqlStore", "Store", "bmc_context", "cluster_context", "event_row"]


def _bmc_info(row: BmcRow | None) -> BmcInfo | None:
    if row is None:
        return None
    return BmcInfo(
        driver=row.driver,
        address=row.address,
        port=row.port,
        username=row.username,
        password_ref=row.password_ref,
        has_password=row.password_enc is not None,
        options=dict(row.options),
    )


def machine_record(row: MachineRow, macs: Sequence[str], bmc: BmcRow | None) -> MachineRecord:
    """A frozen record from the rows of one machine."""
    return MachineRecord(
        name=row.name,
        macs=tuple(macs),
        cluster=row.cluster,
        role=row.role,
        uuid=row.uuid,
        serial=row.serial,
        ip=row.ip,
        hostname=row.hostname,
        install_disk=row.install_disk,
        arch=row.arch,
        labels=dict(row.labels),
        spec=dict(row.spec),
        state=row.state,
        desired=row.desired,
        state_reason=row.state_reason,
        state_since=row.state_since,
        attempts=row.attempts,
        installed=row.installed,
        owner=row.owner,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        bmc=_bmc_info(bmc),
    )


class SqlStore:
    """Async access to machines, clusters, events, leases and secrets, in SQL."""

    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self.engine = engine
        self._box = box
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def box(self) -> SecretBox:
        """Seals and opens secrets at rest."""
        return self._box

    @classmethod
    def open(cls, url: str, state_dir: Path) -> SqlStore:
        """A store on `url`, with the secret key from `state_dir` (or the environment)."""
        private_dir(state_dir)  # 0700: the key, the API token and the database live here
        return cls(make_engine(url), SecretBox(load_or_create_key(state_dir)))

    async def close(self) -> None:
        """Release the connection pool."""
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise if the database cannot answer `SELECT 1`."""
        async with self.session() as session:
            await session.execute(text("SELECT 1"))

    # -- inventory --------------------------------------------------------------------

    async def inventory_snapshot(self) -> InventorySnapshot:
        """The inventory rows as plain values."""
        async with self.session() as session:
            return await read_snapshot(session)

    async def apply_inventory(
        self, plan: Callable[[InventorySnapshot], InventoryWrite], *, dry_run: bool
    ) -> InventoryWrite:
        """One transaction: snapshot, `plan`, write; a dry run rolls back."""
        async with self._sessions() as session:
            transaction = await session.begin()
            try:
                write = await apply_write(session, plan, utcnow())
            except BaseException:
                await transaction.rollback()
                raise
            if dry_run:
                await transaction.rollback()
            else:
                await transaction.commit()
        return write

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed on success, rolled back on error."""
        async with self._sessions() as session, session.begin():
            yield session

    # -- machines ---------------------------------------------------------------------

    async def _records(self, session: AsyncSession, names: Sequence[str] | None) -> list[MachineRecord]:
        query = select(MachineRow).order_by(col(MachineRow.name))
        if names is not None:
            query = query.where(col(MachineRow.name).in_(list(names)))
        rows = list((await session.execute(query)).scalars())
        ids = [r.id for r in rows]
        nics: dict[int, list[str]] = {}
        for nic in (
            await session.execute(
                select(NicRow).where(col(NicRow.machine_id).in_(ids)).order_by(col(NicRow.position))
            )
        ).scalars():
            nics.setdefault(nic.machine_id, []).append(nic.mac)
        bmcs = {
            b.machine_id: b
            for b in (await session.execute(select(BmcRow).where(col(BmcRow.machine_id).in_(ids)))).scalars()
        }
        return [machine_record(r, nics.get(r.id or 0, []), bmcs.get(r.id or 0)) for r in rows]

    async def list_machines(self) -> list[MachineRecord]:
        """Every machine, by name."""
        async with self.session() as session:
            return await self._records(session, None)

    async def get_machine(self, name: str) -> MachineRecord | None:
        """One machine, or None."""
        async with self.session() as session:
            found = await self._records(session, [name])
        return found[0] if found else None

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
        """Move a machine to `to_state` if it is in one of `expect` (compare-and-set).

        Only `provisioner.lifecycle.move` calls this: it decides the move from the table.
        Returns False (and writes nothing) when another actor moved it first: with
        several daemon instances on one database, this is what keeps a machine's run
        single-threaded.
        """
        check_plain_fields(fields)
        now = utcnow()
        values: dict[str, Any] = {
            "state": to_state,
            "state_reason": reason,
            "state_since": now,
            "updated_at": now,
            **fields,
        }
        query = (
            update(MachineRow)
            .where(col(MachineRow.name) == name)
            .where(col(MachineRow.state).in_(list(expect)))
        )
        async with self.session() as session:
            result = await session.execute(query.values(**values))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            session.add(event_row(event))
        return True

    async def update_machine(self, name: str, *, event: Event | None = None, **fields: Any) -> bool:  # noqa: ANN401
        """Set plain fields of a machine (desired, attempts, owner, last_seen, ...), never its state."""
        check_plain_fields(fields)
        fields["updated_at"] = utcnow()
        async with self.session() as session:
            result = await session.execute(
                update(MachineRow).where(col(MachineRow.name) == name).values(**fields)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if event is not None:
                session.add(event_row(event))
        return True

    async def claim(self, name: str, instance: str, *, stale_after_s: float) -> bool:
        """Take (or keep) the right to drive a machine's run.

        With several daemons on one database, only the claim holder acts on a machine;
        a claim not renewed for `stale_after_s` (its daemon died) can be taken over.
        """
        now = utcnow()
        stale = now - timedelta(seconds=stale_after_s)
        query = (
            update(MachineRow)
            .where(col(MachineRow.name) == name)
            .where(
                or_(
                    col(MachineRow.owner).is_(None),
                    col(MachineRow.owner) == instance,
                    col(MachineRow.updated_at) < stale,
                )
            )
            .values(owner=instance, updated_at=now)
        )
        async with self.session() as session:
            result = await session.execute(query)
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def release_machine(self, name: str, macs: Sequence[str], *, event: Event | None = None) -> int:
        """Deprovisioning: release the machine's leases and revoke its config tokens.

        Returns how many leases were released. The DHCP service drops released leases
        from its cache when it sees them (or on restart); the addresses stay reserved
        to the machine by the inventory either way.
        """
        async with self.session() as session:
            result = await session.execute(
                update(LeaseRow)
                .where(col(LeaseRow.mac).in_(list(macs)))
                .where(col(LeaseRow.state).in_(["bound", "offered"]))
                .values(state="released", updated_at=utcnow())
            )
            await session.execute(
                update(ConfigTokenRow)
                .where(col(ConfigTokenRow.machine) == name)
                .where(col(ConfigTokenRow.revoked).is_(False))
                .values(revoked=True)
            )
            if event is not None:
                session.add(event_row(event))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def bmc_password_blob(self, name: str) -> bytes | None:
        """The BMC password ciphertext of a machine (decrypt with `box` and `bmc_context`)."""
        async with self.session() as session:
            row = (
                await session.execute(select(BmcRow).join(MachineRow).where(col(MachineRow.name) == name))
            ).scalar_one_or_none()
        return None if row is None else row.password_enc

    async def bmc_password(self, name: str) -> str | None:
        """The decrypted BMC password of a machine, for one call. Never log the result."""
        blob = await self.bmc_password_blob(name)
        return None if blob is None else self.box.open_text(blob, bmc_context(name))

    # -- clusters ---------------------------------------------------------------------

    @staticmethod
    def _cluster_record(row: ClusterRow) -> ClusterRecord:
        return ClusterRecord(
            name=row.name,
            talos_version=row.talos_version,
            kubernetes_version=row.kubernetes_version,
            endpoint=row.endpoint,
            asset_set=row.asset_set,
            spec=dict(row.spec),
            has_secrets=row.secrets_enc is not None,
        )

    async def list_clusters(self) -> list[ClusterRecord]:
        """Every cluster, by name."""
        async with self.session() as session:
            rows = (await session.execute(select(ClusterRow).order_by(col(ClusterRow.name)))).scalars()
            return [self._cluster_record(r) for r in rows]

    async def get_cluster(self, name: str) -> ClusterRecord | None:
        """One cluster, or None."""
        async with self.session() as session:
            row = (
                await session.execute(select(ClusterRow).where(col(ClusterRow.name) == name))
            ).scalar_one_or_none()
            return None if row is None else self._cluster_record(row)

    async def put_cluster_secrets(self, name: str, bundle: bytes, *, actor: str = "cli") -> bool:
        """Store a cluster's secrets bundle encrypted. False if the cluster does not exist."""
        blob = self.box.seal(bundle, cluster_context(name))
        event = Event(kind="cluster.secrets", at=utcnow(), actor=actor, data={"cluster": name})
        async with self.session() as session:
            result = await session.execute(
                update(ClusterRow)
                .where(col(ClusterRow.name) == name)
                .values(secrets_enc=blob, updated_at=utcnow())
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            session.add(event_row(event))
        return True

    async def get_cluster_secrets(self, name: str) -> bytes | None:
        """The decrypted secrets bundle of a cluster, or None if it has none."""
        async with self.session() as session:
            blob = (
                await session.execute(select(col(ClusterRow.secrets_enc)).where(col(ClusterRow.name) == name))
            ).scalar_one_or_none()
        return None if blob is None else self.box.open(blob, cluster_context(name))

    # -- events -----------------------------------------------------------------------

    async def append_events(self, events: Sequence[Event]) -> None:
        """Insert events in one transaction (the event writer's group commit)."""
        if not events:
            return
        async with self.session() as session:
            session.add_all([event_row(e) for e in events])

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
        """Newest first; page with `before_id` (the last id of the previous page)."""
        query = select(EventRow).order_by(col(EventRow.id).desc())
        if machine is not None:
            query = query.where(col(EventRow.machine) == machine)
        if kind is not None:
            # A trailing dot selects a family: "dhcp." matches dhcp.ack, dhcp.offer, ...
            query = query.where(
                col(EventRow.kind).startswith(kind) if kind.endswith(".") else col(EventRow.kind) == kind
            )
        if severity is not None:
            query = query.where(col(EventRow.severity) == severity)
        if since is not None:
            query = query.where(col(EventRow.at) >= since)
        if before_id is not None:
            query = query.where(col(EventRow.id) < before_id)
        query = query.limit(max(1, min(limit, MAX_EVENT_PAGE)))
        async with self.session() as session:
            return [console_sql.event_record(r) for r in (await session.execute(query)).scalars()]

    # -- the console's change feed and token history (SQL in console_sql.py) ----------

    async def machines_changed_since(
        self, mark: datetime | None
    ) -> tuple[list[MachineRecord], datetime | None]:
        """Machines updated after `mark` (by name) and the new mark; no mark: none, the newest."""
        async with self.session() as session:
            names, newest = await console_sql.changed_names(session, mark)
            return (await self._records(session, names) if names else []), newest

    async def events_after(self, last_id: int | None, *, limit: int = 500) -> tuple[list[EventRecord], int]:
        """Events after `last_id`, oldest first, and the new cursor; no cursor: none, the newest id."""
        async with self.session() as session:
            return await console_sql.events_after(session, last_id, max(1, min(limit, MAX_EVENT_PAGE)))

    async def list_config_tokens(self, machine: str, *, limit: int = 10) -> list[TokenRecord]:
        """A machine's config tokens, newest first (hashes never leave the database)."""
        async with self.session() as session:
            return await console_sql.machine_tokens(session, machine, limit)

    # -- discovered machines and leases -----------------------------------------------

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

        The caller emits `machine.discovered` (grouped by source, so a flood of fresh
        MACs is folded). With `limit`, a new row first evicts the least recently seen
        rows beyond it: the table stays bounded and shows the newest (issue 14).
        """
        now = utcnow()
        async with self.session() as session:
            row = (
                await session.execute(select(DiscoveredRow).where(col(DiscoveredRow.mac) == mac))
            ).scalar_one_or_none()
            if row is not None:
                row.last_seen = now
                row.seen_count += 1
                row.uuid = uuid or row.uuid
                row.serial = serial or row.serial
                row.arch = arch or row.arch
                return False
            if limit is not None:
                await self._evict_discovered(session, limit - 1)
            session.add(
                DiscoveredRow(
                    mac=mac,
                    uuid=uuid,
                    serial=serial,
                    arch=arch,
                    vendor_class=vendor_class[:255],
                    source=source,
                    first_seen=now,
                    last_seen=now,
                )
            )
        return True

    @staticmethod
    async def _evict_discovered(session: AsyncSession, keep: int) -> None:
        count = int((await session.execute(select(func.count()).select_from(DiscoveredRow))).scalar_one())
        if count <= keep:
            return
        oldest = select(col(DiscoveredRow.id)).order_by(col(DiscoveredRow.last_seen)).limit(count - keep)
        await session.execute(delete(DiscoveredRow).where(col(DiscoveredRow.id).in_(oldest)))

    async def list_discovered(self) -> list[DiscoveredRecord]:
        """Every discovered machine, most recently seen first."""
        async with self.session() as session:
            rows = (
                await session.execute(select(DiscoveredRow).order_by(col(DiscoveredRow.last_seen).desc()))
            ).scalars()
            return [
                DiscoveredRecord(
                    mac=r.mac,
                    uuid=r.uuid,
                    serial=r.serial,
                    arch=r.arch,
                    vendor_class=r.vendor_class,
                    source=r.source,
                    seen_count=r.seen_count,
                    first_seen=r.first_seen,
                    last_seen=r.last_seen,
                )
                for r in rows
            ]

    async def list_leases(self) -> list[dict[str, Any]]:
        """Every lease row as a plain dict, by address."""
        async with self.session() as session:
            rows = (await session.execute(select(LeaseRow).order_by(col(LeaseRow.ip)))).scalars()
            return [
                {
                    "ip": r.ip,
                    "mac": r.mac,
                    "hostname": r.hostname,
                    "state": r.state,
                    "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                    "machine": r.machine,
                }
                for r in rows
            ]

    async def leased_addresses(self, *, now: datetime) -> dict[str, str]:
        """Address -> machine of bound, unexpired leases that name their machine."""
        async with self.session() as session:
            rows = (
                await session.execute(
                    select(LeaseRow)
                    .where(col(LeaseRow.state) == "bound")
                    .where(col(LeaseRow.machine).is_not(None))
                    .where(col(LeaseRow.expires_at) > now)
                    .order_by(col(LeaseRow.ip))
                )
            ).scalars()
            return {r.ip: r.machine for r in rows if r.machine}

    async def prune_events(self, *, before: datetime, max_rows: int) -> int:
        """Event retention: delete rows older than `before` and the oldest beyond `max_rows`."""
        async with self.session() as session:
            old = await session.execute(delete(EventRow).where(col(EventRow.at) < before))
            deleted = int(old.rowcount)  # type: ignore[attr-defined]
            cut = (
                await session.execute(
                    select(col(EventRow.id)).order_by(col(EventRow.id).desc()).offset(max_rows).limit(1)
                )
            ).scalar_one_or_none()
            if cut is not None:
                over = await session.execute(delete(EventRow).where(col(EventRow.id) <= cut))
                deleted += int(over.rowcount)  # type: ignore[attr-defined]
        return deleted

    async def count_events(self) -> int:
        """How many events the log holds."""
        async with self.session() as session:
            return int((await session.execute(select(func.count()).select_from(EventRow))).scalar_one())


def _sql_conforms(store: SqlStore) -> Store:
    """Mypy checks here that the SQL store is a `Store`."""
    return store
