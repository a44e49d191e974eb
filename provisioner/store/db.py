"""Engine construction and schema creation for SQLite and PostgreSQL.

SQLite runs in WAL mode with `synchronous=FULL`: a commit that returned is on disk, which
is what "a lease is committed before its ACK goes out" needs. A busy timeout lets the
CLI and the daemon share the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from provisioner.secretfile import private_db_file
from provisioner.store import tables  # noqa: F401 - registers the tables on the metadata

__all__ = ["create_schema", "is_sqlite", "make_engine"]

SQLITE_BUSY_TIMEOUT_MS = 10_000


def is_sqlite(url: str) -> bool:
    """True for an SQLite database URL."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401 - DBAPI
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine for `url`; creates the SQLite file's directory if needed."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_db_file(Path(parsed.database))  # 0600, and its WAL with it (issue 14)
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


async def create_schema(engine: AsyncEngine) -> None:
    """Create every table directly (tests); production uses `provisioner db upgrade`."""
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
