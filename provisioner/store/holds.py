"""Frozen provisioning windows (issue 14): a spoofing alert stops token issue until released.

In proxy and relay modes we do not hand out addresses, so the only thing tying a config
token to the real machine is "the first address that asked in this window". When a second
address asks for the same machine while the first one's token is live, one of the two is
not the machine and we cannot tell which: the window is frozen (this row), the live token
revoked, and nothing is issued until the operator releases the machine
(`provisioner machines release NAME`, `POST /api/v1/machines/{name}/release`).

The row is a database fact, not process memory, so a restart or a second daemon instance
on the same database keeps the window frozen. Freezing is idempotent (unique machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from provisioner.store.repository import SqlStore
from provisioner.store.tables import WindowHoldRow

__all__ = ["HoldRecord", "WindowHolds"]


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """A frozen window: which machine, when, and the two addresses that asked."""

    machine: str
    frozen_at: datetime
    first: str
    second: str


class WindowHolds:
    """Frozen-window operations on a `SqlStore`."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def get(self, machine: str) -> HoldRecord | None:
        """The machine's hold, or None if its window is not frozen."""
        async with self._store.session() as session:
            row = (
                await session.execute(select(WindowHoldRow).where(col(WindowHoldRow.machine) == machine))
            ).scalar_one_or_none()
            if row is None:
                return None
            return HoldRecord(row.machine, row.frozen_at, row.first, row.second)

    async def freeze(self, machine: str, first: str, second: str, *, now: datetime) -> bool:
        """Freeze the window; False if it was already frozen (the first record is kept)."""
        try:
            async with self._store.session() as session:
                session.add(WindowHoldRow(machine=machine, frozen_at=now, first=first, second=second))
        except IntegrityError:
            return False
        return True

    async def release(self, machine: str) -> bool:
        """Unfreeze; False if the window was not frozen."""
        async with self._store.session() as session:
            result = await session.execute(delete(WindowHoldRow).where(col(WindowHoldRow.machine) == machine))
            return bool(result.rowcount)  # type: ignore[attr-defined]
