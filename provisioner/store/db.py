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
from provisioner.startup import StartupError, os_problem
from provisioner.store import tables  # noqa: F401 - registers the tables on the metadata

__all__ = ["create_schema", "database_error", "is_sqlite", "make_engine"]

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


def _redacted_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown by scheme only
        return url.split("://", 1)[0] + "://..."


def database_error(database_url: str, effective_url: str, exc: BaseException) -> StartupError:
    """A StartupError for a database that cannot be opened or reached at start.

    Names `database_url` when it is set, else `state_dir` (the default SQLite file lives
    there). The URL is shown with its password hidden.
    """
    setting = "database_url" if database_url else "state_dir"
    return StartupError(setting, _redacted_url(effective_url), _db_problem(exc))


def _db_problem(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's error (`orig`) and appends SQL and a help link; asyncpg
    # raises OSError subclasses for the socket. The innermost useful cause wins.
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno is not None:
            return f"cannot connect: {os_problem(cause)}"
        if isinstance(cause, TimeoutError):
            return "cannot connect: no answer in time"
        inner = getattr(cause, "orig", None) or cause.__cause__
        if inner is None:
            break
        cause = inner
    text = str(cause if cause is not None else exc).splitlines()
    first = text[0] if text else ""
    return f"cannot open the database: {first or type(exc).__name__}"
