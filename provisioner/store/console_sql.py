"""The console's queries in SQL: the change feed's cursors and a machine's config tokens.

`SqlStore` delegates here (provisioner/store/repository.py) so the console
(provisioner/web/ui/) reads through `Store` operations and never touches SQLAlchemy.
Both feed queries are indexed: `machine.updated_at` (every state change and field update
sets it) and the `event` primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from provisioner.store.records import EventRecord, TokenRecord
from provisioner.store.tables import ConfigTokenRow, EventRow, MachineRow

__all__ = ["changed_names", "event_record", "events_after", "machine_tokens", "token_record"]


def event_record(row: EventRow) -> EventRecord:
    """An event row as a frozen record."""
    return EventRecord(
        id=row.id or 0,
        at=row.at,
        kind=row.kind,
        machine=row.machine,
        severity=row.severity,
        actor=row.actor,
        message=row.message,
        data=dict(row.data),
    )


def token_record(row: ConfigTokenRow) -> TokenRecord:
    """A config token row as a frozen record (the hash stays in the database)."""
    return TokenRecord(
        id=row.id or 0,
        machine=row.machine,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        issued_to=row.issued_to,
        used_at=row.used_at,
        used_by=row.used_by,
        revoked=row.revoked,
        code_hash=row.code_hash,
    )


async def changed_names(session: AsyncSession, mark: datetime | None) -> tuple[list[str], datetime | None]:
    """Machines whose `updated_at` is after `mark`, and the newest `updated_at` seen.

    With no mark: no names, only the current newest (where a new feed starts).
    """
    if mark is None:
        return [], (await session.execute(select(func.max(MachineRow.updated_at)))).scalar_one()
    rows = (
        await session.execute(
            select(col(MachineRow.name), col(MachineRow.updated_at)).where(col(MachineRow.updated_at) > mark)
        )
    ).all()
    if not rows:
        return [], mark
    return sorted(r[0] for r in rows), max(r[1] for r in rows)


async def events_after(
    session: AsyncSession, last_id: int | None, limit: int
) -> tuple[list[EventRecord], int]:
    """Events with an id after `last_id`, oldest first, and the new cursor.

    With no cursor: no events, only the current newest id, 0 if none (where a new feed starts).
    """
    if last_id is None:
        # 0 on an empty log (ids start at 1), so the feed's first events are not skipped.
        return [], (await session.execute(select(func.max(EventRow.id)))).scalar_one() or 0
    rows: Sequence[EventRow] = list(
        (
            await session.execute(
                select(EventRow).where(col(EventRow.id) > last_id).order_by(col(EventRow.id)).limit(limit)
            )
        ).scalars()
    )
    fresh = [event_record(r) for r in rows]
    return fresh, (fresh[-1].id if fresh else last_id)


async def machine_tokens(session: AsyncSession, machine: str, limit: int) -> list[TokenRecord]:
    """A machine's config tokens, newest first."""
    rows = (
        await session.execute(
            select(ConfigTokenRow)
            .where(col(ConfigTokenRow.machine) == machine)
            .order_by(col(ConfigTokenRow.id).desc())
            .limit(limit)
        )
    ).scalars()
    return [token_record(r) for r in rows]
