"""Fixtures for the security tests: the Talos test bundle, and a real daemon per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.talos.conftest import fresh_bundle, other_bundle  # noqa: F401 - fixtures, used by name

from .secenv import Daemon, make_daemon


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory: make_daemon(...) then start it; every daemon is stopped at teardown."""
    started: list[Daemon] = []

    def start(**kw: Any) -> Daemon:
        daemon = make_daemon(tmp_path / f"d{len(started)}", **kw)
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
