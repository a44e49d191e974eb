"""`SqlLeaseStore`: DHCP leases in the `lease` table (SQLite or PostgreSQL).

The `LeaseStore` protocol and the rule it keeps are the DHCP module's
(provisioner/dhcp/leases.py, provisioner/dhcp/binding.py: `LEASE_UPSERT_WHERE` is the
one definition of the upsert rule, used here and by the SQLite writer thread).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from provisioner.dhcp.binding import LEASE_UPSERT_WHERE
from provisioner.dhcp.book import Lease, LeaseState
from provisioner.dhcp.leases import LoadResult, StoreError, validate_lease
from provisioner.store.lease_writer import SqliteLeaseWriter
from provisioner.store.tables import LeaseRow

__all__ = ["SqlLeaseStore"]

log = logging.getLogger(__name__)


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _epoch(value: datetime | None) -> float:
    if value is None:
        return 0.0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _from_row(row: Mapping[Any, Any]) -> Lease:
    return Lease(
        ip=str(row["ip"]),
        mac=str(row["mac"]),
        client_id=str(row["client_id"] or ""),
        hostname=str(row["hostname"] or ""),
        state=LeaseState(row["state"]),
        expires_at=_epoch(row["expires_at"]),
        machine=row["machine"],
        instance=str(row["instance"] or ""),
    )


class SqlLeaseStore:
    """Leases in the `lease` table (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use `engine`; the schema must exist."""
        self.engine = engine
        self._dialect = engine.dialect.name
        self._stmt: Any = None
        database = engine.url.database
        # SQLite files get the one-thread fast path (see lease_writer.py); :memory: cannot.
        self._writer = (
            SqliteLeaseWriter(database)
            if self._dialect == "sqlite" and database and database != ":memory:"
            else None
        )

    async def load(self) -> LoadResult:
        """Every valid row; a row that fails validation is skipped and counted."""
        good: list[Lease] = []
        bad = 0
        async with self.engine.connect() as conn:
            result = await conn.execute(select(LeaseRow.__table__))  # type: ignore[attr-defined]
            for row in result.mappings():
                try:
                    lease = _from_row(row)
                except (ValueError, TypeError, OverflowError, KeyError):
                    bad += 1
                    continue
                if validate_lease(lease):
                    good.append(lease)
                else:
                    bad += 1
        if bad:
            log.warning("skipped %d invalid lease rows", bad)
        return LoadResult(good, bad)

    def _upsert(self) -> Any:  # noqa: ANN401 - a dialect-specific SQLAlchemy statement
        """The one upsert statement, built once so SQLAlchemy compiles it once (hot path)."""
        if self._stmt is not None:
            return self._stmt
        table = LeaseRow.__table__  # type: ignore[attr-defined]
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(table)
        columns = ("mac", "client_id", "hostname", "state", "expires_at", "machine", "instance", "updated_at")
        self._stmt = stmt.on_conflict_do_update(
            index_elements=["ip"],
            set_={name: stmt.excluded[name] for name in columns},
            where=text(LEASE_UPSERT_WHERE),
        ).returning(table.c.ip)
        return self._stmt

    async def commit(self, leases: Sequence[Lease], now: float) -> list[bool]:
        """One transaction; the unique(ip) constraint and the WHERE clause decide.

        An executemany of one cached statement: SQLAlchemy's "insertmanyvalues" sends it as
        multi-row INSERTs and gathers RETURNING; a row that lost its conflict returns nothing.
        """
        if not leases:
            return []
        latest = {lease.ip: lease for lease in leases}  # one row per ip per statement
        stamp = _ts(now)
        rows = [
            {
                "ip": lease.ip,
                "mac": lease.mac,
                "client_id": lease.client_id,
                "hostname": lease.hostname,
                "state": str(lease.state),
                "expires_at": _ts(lease.expires_at),
                "machine": lease.machine,
                "instance": lease.instance,
                "updated_at": stamp,
            }
            for lease in latest.values()
        ]
        try:
            if self._writer is not None:
                won = await self._writer.commit(list(latest.values()), now)
            else:
                async with self.engine.begin() as conn:
                    result = await conn.execute(self._upsert(), rows)
                    won = {row[0] for row in result}
        except Exception as exc:  # the driver's errors vary; the caller must not ACK
            raise StoreError(str(exc)) from exc
        return [lease.ip in won and latest[lease.ip] is lease for lease in leases]

    async def changed_since(self, since: float, *, exclude_instance: str | None = None) -> list[Lease]:
        """Rows updated at or after `since` (our own writes are filtered in SQL: cheap)."""
        table = LeaseRow.__table__  # type: ignore[attr-defined]
        query = select(table).where(table.c.updated_at >= _ts(since))
        if exclude_instance is not None:
            query = query.where(table.c.instance != exclude_instance)
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
            out = []
            for row in result.mappings():
                try:
                    lease = _from_row(row)
                except (ValueError, TypeError, OverflowError, KeyError):
                    continue
                if validate_lease(lease):
                    out.append(lease)
            return out

    async def fetch(self, ip: str) -> Lease | None:
        """The row for `ip`, if any (who won a conflict)."""
        table = LeaseRow.__table__  # type: ignore[attr-defined]
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(table).where(table.c.ip == ip))).mappings().first()
        if row is None:
            return None
        try:
            return _from_row(row)
        except (ValueError, TypeError, KeyError):
            return None

    async def close(self) -> None:
        """Stop the SQLite writer thread; the engine belongs to the caller."""
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
