"""Shared constants and types for the TFTP tests (kept out of conftest.py so modules can import them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from provisioner.events import MemoryEventSink
from provisioner.tftp import TftpServer

SIZES = {"f0.bin": 0, "f511.bin": 511, "f512.bin": 512, "f1m.bin": 1 << 20, "f40m.bin": 40 << 20}

ServerFactory = Callable[..., Awaitable[tuple[TftpServer, MemoryEventSink]]]
