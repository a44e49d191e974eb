"""The fast tier (`make check`): which tests run in the inner loop, marked `check` here.

`make check` runs `pytest -m check` under coverage (lint, types and these tests in under
two minutes on 2 cores); `make test` runs `make check`, then `pytest -m "not check"`, so
every test still runs exactly once. Plain `pytest` runs everything.

A test is in the fast tier when its file is under one of `CHECK_PATHS` and it needs no
peer process, network namespace, VM or PostgreSQL: no `lab`, `netns`, `slow`, `postgres`
or `e2e` marker, and not the PostgreSQL variant of a database-parametrised test. These
are the unit and in-memory tests (sans-I/O cores, generators, SQLite-backed stores in a
temporary directory); they are also the tests the coverage floor on the pure cores is
measured with (scripts/coverage-floor, docs/testing.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CHECK_PATHS = (
    "unit",
    "inventory",
    "talos",
    "dhcp/test_codec_oracle.py",
    "dhcp/test_pxe.py",
    "dhcp/test_server.py",
    "dhcp/test_fuzz.py",
    "dhcp/test_leases.py",
    "dhcp/test_core_edges.py",
    "tftp/test_tftp_codec.py",
    "tftp/test_tftp_transfer.py",
    "tftp/test_tftp_session.py",
    "tftp/test_tftp_files.py",
    "power/test_power_codec.py",
    "power/test_power_service.py",
    "power/test_power_calls.py",
    "web/test_ipxe_golden.py",
    "web/test_ratelimit.py",
)
"""Directories and files (relative to tests/) whose tests form the fast tier."""

SLOW_MARKERS = ("lab", "netns", "slow", "postgres", "e2e")


def in_check_tier(item: pytest.Item) -> bool:
    """Whether `item` belongs to the fast tier (see the module docstring)."""
    path = Path(str(item.path)).resolve()
    if not any(path.is_relative_to(TESTS / entry) for entry in CHECK_PATHS):
        return False
    if any(item.get_closest_marker(name) is not None for name in SLOW_MARKERS):
        return False
    callspec = getattr(item, "callspec", None)
    return callspec is None or "postgres" not in callspec.id.split("-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the fast tier `check`."""
    for item in items:
        if in_check_tier(item):
            item.add_marker(pytest.mark.check)
