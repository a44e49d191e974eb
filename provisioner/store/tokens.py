"""One-time config tokens: issued in a machine's iPXE script, spent by its config fetch.

Only the sha256 of a token is stored, so a database dump reveals no usable token. A new
token revokes the machine's earlier unused ones: only the newest script can fetch a config.
Spending is a compare-and-set (`used_at IS NULL`), so two concurrent fetches with one token
cannot both succeed, even from two daemon instances on one database.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import col

from provisioner.store.repository import SqlStore
from provisioner.store.tables import ConfigTokenRow, LeaseRow

__all__ = ["ConfigTokens", "TokenRecord", "hash_token"]

TOKEN_BYTES = 32  # 256 bits; docs/threats.md C4 asks for at least 128


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token row as the guard sees it (never the token itself)."""

    id: int
    machine: str
    issued_at: datetime
    expires_at: datetime
    issued_to: str
    used_at: datetime | None
    used_by: str
    revoked: bool


def _record(row: ConfigTokenRow) -> TokenRecord:
    return TokenRecord(
        id=row.id or 0,
        machine=row.machine,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        issued_to=row.issued_to,
        used_at=row.used_at,
        used_by=row.used_by,
        revoked=row.revoked,
    )


class ConfigTokens:
    """Config token operations on a `SqlStore`."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def issue(self, machine: str, issued_to: str, *, now: datetime, ttl_s: float) -> str:
        """A fresh token for `machine`, fetched by `issued_to`; earlier unused ones are revoked."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        async with self._store.session() as session:
            await session.execute(
                update(ConfigTokenRow)
                .where(col(ConfigTokenRow.machine) == machine)
                .where(col(ConfigTokenRow.used_at).is_(None))
                .where(col(ConfigTokenRow.revoked).is_(False))
                .values(revoked=True)
            )
            session.add(
                ConfigTokenRow(
                    token_hash=hash_token(token),
                    machine=machine,
                    issued_at=now,
                    expires_at=now + timedelta(seconds=ttl_s),
                    issued_to=issued_to,
                )
            )
        return token

    async def lookup(self, token: str) -> TokenRecord | None:
        """The record of a presented token, or None if it was never issued."""
        async with self._store.session() as session:
            row = (
                await session.execute(
                    select(ConfigTokenRow).where(col(ConfigTokenRow.token_hash) == hash_token(token))
                )
            ).scalar_one_or_none()
            return None if row is None else _record(row)

    async def live(self, machine: str, *, now: datetime) -> TokenRecord | None:
        """The machine's newest token that is unused, unrevoked and unexpired, if any."""
        async with self._store.session() as session:
            row = (
                await session.execute(
                    select(ConfigTokenRow)
                    .where(col(ConfigTokenRow.machine) == machine)
                    .where(col(ConfigTokenRow.used_at).is_(None))
                    .where(col(ConfigTokenRow.revoked).is_(False))
                    .where(col(ConfigTokenRow.expires_at) > now)
                    .order_by(col(ConfigTokenRow.id).desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            return None if row is None else _record(row)

    async def last_spent(self, machine: str) -> TokenRecord | None:
        """The machine's most recently spent token (whose config was served), if any."""
        async with self._store.session() as session:
            row = (
                await session.execute(
                    select(ConfigTokenRow)
                    .where(col(ConfigTokenRow.machine) == machine)
                    .where(col(ConfigTokenRow.used_at).is_not(None))
                    .order_by(col(ConfigTokenRow.used_at).desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            return None if row is None else _record(row)

    async def spend(self, token_id: int, used_by: str, *, now: datetime) -> bool:
        """Mark a token used; False if it was already used or revoked (lost the race)."""
        async with self._store.session() as session:
            result = await session.execute(
                update(ConfigTokenRow)
                .where(col(ConfigTokenRow.id) == token_id)
                .where(col(ConfigTokenRow.used_at).is_(None))
                .where(col(ConfigTokenRow.revoked).is_(False))
                .values(used_at=now, used_by=used_by)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def revoke_machine(self, machine: str) -> int:
        """Revoke every unused token of a machine (deprovision, delete); returns how many."""
        async with self._store.session() as session:
            result = await session.execute(
                update(ConfigTokenRow)
                .where(col(ConfigTokenRow.machine) == machine)
                .where(col(ConfigTokenRow.used_at).is_(None))
                .where(col(ConfigTokenRow.revoked).is_(False))
                .values(revoked=True)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    async def lease_addresses(self, machine: str, macs: Sequence[str], *, now: datetime) -> set[str]:
        """The addresses of this machine's bound, unexpired leases."""
        async with self._store.session() as session:
            rows = (
                await session.execute(
                    select(LeaseRow)
                    .where(col(LeaseRow.state) == "bound")
                    .where(col(LeaseRow.expires_at) > now)
                )
            ).scalars()
            return {r.ip for r in rows if r.machine == machine or r.mac in macs}

    async def holds_lease(self, address: str, machine: str, macs: Sequence[str], *, now: datetime) -> bool:
        """Whether `address` holds a bound, unexpired lease of this machine (full DHCP mode)."""
        async with self._store.session() as session:
            rows = (
                await session.execute(
                    select(LeaseRow)
                    .where(col(LeaseRow.ip) == address)
                    .where(col(LeaseRow.state) == "bound")
                    .where(col(LeaseRow.expires_at) > now)
                )
            ).scalars()
            return any(r.machine == machine or r.mac in macs for r in rows)
