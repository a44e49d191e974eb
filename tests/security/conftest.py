"""Fixtures for the attack tests: a real daemon per test, stopped by PID."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from secenv import Daemon, make_daemon


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
