"""Suite-wide fixtures: a throw-away PostgreSQL server, store factories for both databases.

PostgreSQL runs as the `postgres` user in a temporary directory that user owns (initdb
refuses to run as root), on a free loopback port, and is stopped and removed at the end
of the session even when tests fail (docs/testing.md).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from provisioner.store.db import create_schema
from provisioner.store.repository import SqlStore

pytest_plugins = ("tests.tiers",)  # marks the fast tier `make check` runs

# The property tests assert correctness (a parse round-trips, an oracle agrees), not speed:
# speed is measured in bench/. Hypothesis's default 200 ms per-example deadline is a
# timing heuristic; under coverage tracing on a loaded 2-core machine a correct example
# took 348 ms and failed the run. No deadline, so a property test fails only on a property.
hypothesis_settings.register_profile("provisioner", deadline=None)
hypothesis_settings.load_profile("provisioner")

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_db_counter = itertools.count()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runuser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Start PostgreSQL 15 for this test session; yield its asyncpg URL (db `postgres`)."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed: run `make test` (it installs postgresql)")
    base = Path(tempfile.mkdtemp(prefix="pv-pg-"))
    shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    port = free_port()
    _runuser(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-k {base} -c listen_addresses=127.0.0.1 -p {port} -c fsync=on"
    _runuser(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


async def _create_database(admin_url: str, name: str) -> None:
    import asyncpg

    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture
def pg_database_url(postgres_url: str) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"pv_test_{os.getpid()}_{next(_db_counter)}"
    asyncio.run(_create_database(postgres_url, name))
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A state directory for one test."""
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite and once on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/provisioner.db"
    return str(request.getfixturevalue("pg_database_url"))


@pytest.fixture
async def store(db_url: str, state_dir: Path) -> AsyncIterator[SqlStore]:
    """A SqlStore with the schema created, on each database."""
    st = SqlStore.open(db_url, state_dir)
    await create_schema(st.engine)
    try:
        yield st
    finally:
        await st.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path, state_dir: Path) -> AsyncIterator[SqlStore]:
    """A SqlStore on SQLite only (for tests that are about logic, not the database)."""
    st = SqlStore.open(f"sqlite+aiosqlite:///{tmp_path}/provisioner.db", state_dir)
    await create_schema(st.engine)
    try:
        yield st
    finally:
        await st.close()
