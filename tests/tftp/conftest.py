"""Fixtures for TFTP tests: a root with byte-exact test files, and servers on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from provisioner.events import MemoryEventSink
from provisioner.settings import TftpSettings
from provisioner.tftp import FileSource, TftpServer

from .tftp_env import SIZES, ServerFactory

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def tftp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tftproot")
    rng = random.Random(1350)
    for name, size in SIZES.items():
        (root / name).write_bytes(rng.randbytes(size))
    (root / "text.txt").write_bytes(b"line one\nline two\r\nbare cr\rend\n")
    (root / "etc").symlink_to("/etc")
    (root / "passwd").symlink_to("/etc/passwd")
    return root


@pytest.fixture
async def tftp_server(tftp_root: Path) -> AsyncIterator[ServerFactory]:
    """Factory: `await tftp_server(**settings)` starts a server; all are stopped after."""
    started: list[TftpServer] = []

    async def start(**overrides: object) -> tuple[TftpServer, MemoryEventSink]:
        values: dict[str, object] = {
            "port": 0,
            "block_size_max": 65464,
            "window_size_max": 64,
            "timeout_s": 0.5,
            "retries": 5,
        }
        values.update(overrides)
        settings = TftpSettings.model_validate(values)
        events = MemoryEventSink()
        server = TftpServer(settings, events, FileSource(tftp_root, patterns=("*",)), host="127.0.0.1")
        await server.start()
        started.append(server)
        return server, events

    yield start
    for server in started:
        await server.stop()
    await asyncio.sleep(0)
