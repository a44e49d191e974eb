"""Web fixtures: the web layer's ports (WebRuntime) on a real database and the web server on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from webenv import Env, start_env

from provisioner.store.repository import Store


@pytest.fixture
async def env(sqlite_store: Store, state_dir: Path) -> AsyncIterator[Env]:
    """The web server on SQLite."""
    e = await start_env(sqlite_store, state_dir)
    try:
        yield e
    finally:
        await e.server.stop()


@pytest.fixture
async def env_any(store: Store, state_dir: Path) -> AsyncIterator[Env]:
    """The web server on SQLite and on PostgreSQL."""
    e = await start_env(store, state_dir)
    try:
        yield e
    finally:
        await e.server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def env_full(sqlite_store: Store, state_dir: Path) -> AsyncIterator[Env]:
    """The web server on SQLite in full DHCP mode (scripts only for our lease holders)."""
    e = await start_env(sqlite_store, state_dir, dhcp={"mode": "full"})
    try:
        yield e
    finally:
        await e.server.stop()
