"""The composition root builds and wires every part without I/O, in a visible order."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from provisioner.daemon import build_daemon
from provisioner.dhcp.discovery import DiscoveryRecorder, arch_name
from provisioner.settings import Settings
from provisioner.store.repository import SqlStore


@pytest.fixture
async def sql(tmp_path: Path) -> SqlStore:
    store = SqlStore.open(f"sqlite+aiosqlite:///{tmp_path}/never-opened.db", tmp_path)
    yield store  # type: ignore[misc]
    await store.close()


async def test_build_wires_every_part_in_start_order(
    sql: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    monkeypatch.setattr(socket.socket, "bind", lambda *a: opened.append(a))
    db = tmp_path / "never-opened.db"
    size = db.stat().st_size if db.exists() else 0  # SqlStore.open may create it empty (0600)
    daemon = build_daemon(Settings(state_dir=tmp_path), sql, instance="test")
    assert [name for name, _ in daemon.parts()] == [
        "events",
        "machine-index",
        "web",
        "power",
        "trustd",
        "tftp",
        "dhcp",
        "telemetry",
        "reconciler",
    ]
    assert opened == []  # nothing bound
    assert (db.stat().st_size if db.exists() else 0) == size == 0  # nor connected
    # the web layer and the reconciler share the one MachinePower; the web layer renders configs
    assert daemon.web_runtime.power is daemon.machine_power
    assert daemon.web_runtime.renderer is not None
    assert daemon.web_runtime.machines == daemon.directory.current
    assert set(daemon.web_runtime.counters()) == {"events", "power", "tftp", "dhcp", "telemetry"}
    # the logs API reads the telemetry part's rings
    assert daemon.telemetry is not None and daemon.web_runtime.logs is daemon.telemetry.hub
    assert daemon.dhcp is not None and isinstance(daemon.dhcp.service.discovered, DiscoveryRecorder)


async def test_disabled_parts_are_not_built(sql: SqlStore, tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "state_dir": tmp_path,
            "dhcp": {"mode": "off"},
            "tftp": {"enabled": False},
            "telemetry": {"enabled": False},
        }
    )
    daemon = build_daemon(settings, sql, instance="test")
    assert not {"dhcp", "tftp", "telemetry"} & set(dict(daemon.parts()))
    assert daemon.web_runtime.logs is None  # the logs API answers 404 telemetry-off


def test_architecture_names_are_the_dhcp_modules_rule() -> None:
    assert [arch_name(a) for a in (0, 7, 9, 11, 16, 99, None)] == [
        "bios",
        "x86_64-efi",
        "x86_64-efi",
        "arm64-efi",
        "x86_64-efi-http",
        "99",
        None,
    ]
