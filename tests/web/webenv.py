"""Helpers for the web tests: seed rows, start the server on a free loopback port."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from provisioner.directory import MachineDirectory
from provisioner.events import MemoryEventSink, utcnow
from provisioner.power.base import PowerFailedError
from provisioner.settings import Settings
from provisioner.store.repository import Store
from provisioner.store.tables import ClusterRow, LeaseRow, MachineRow, NicRow
from provisioner.web.app import create_app
from provisioner.web.context import CTX, WebContext, WebRuntime
from provisioner.web.service import WebServer

API_TOKEN = "test-api-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Env:
    rt: WebRuntime
    directory: MachineDirectory
    events: MemoryEventSink
    server: WebServer
    base: str
    state_dir: Path
    api: str = ""
    """The operators' listener ([api]): /api/v1/*, /metrics."""

    @property
    def store(self) -> Store:
        return self.rt.store

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_TOKEN}"}

    async def refresh(self) -> None:
        await self.directory.refresh()

    @property
    def app_ctx(self) -> WebContext:
        return self.server.app[CTX]


async def add_cluster(
    store: Store, name: str = "c1", *, asset_set: str | None = "talos", **spec: Any
) -> None:
    now = utcnow()
    async with store.session() as session:
        session.add(
            ClusterRow(
                name=name,
                talos_version="1.13.0",
                kubernetes_version="1.32.0",
                endpoint="https://10.77.0.10:6443",
                asset_set=asset_set,
                spec=spec,
                created_at=now,
                updated_at=now,
            )
        )


async def add_machine(
    store: Store,
    name: str,
    macs: list[str],
    *,
    uuid: str | None = None,
    state: str = "Registered",
    desired: str = "none",
    cluster: str | None = "c1",
    installed: bool = False,
    spec: dict[str, Any] | None = None,
) -> None:
    now = utcnow()
    async with store.session() as session:
        row = MachineRow(
            name=name,
            cluster=cluster,
            uuid=uuid,
            state=state,
            desired=desired,
            installed=installed,
            spec=spec or {},
            state_since=now,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        for pos, mac in enumerate(macs):
            session.add(NicRow(machine_id=row.id or 0, mac=mac, position=pos))


async def add_lease(
    store: Store, ip: str, mac: str, machine: str | None, *, state: str = "bound", ttl_s: int = 3600
) -> None:
    now = utcnow()
    async with store.session() as session:
        session.add(
            LeaseRow(
                ip=ip,
                mac=mac,
                machine=machine,
                state=state,
                expires_at=now + timedelta(seconds=ttl_s),
                updated_at=now,
            )
        )


async def start_env(store: Store, state_dir: Path, **app_kw: Any) -> Env:
    idle = float(app_kw.pop("idle", 3.0))
    # Proxy mode by default: the web tests fetch scripts from 127.0.0.1 with no lease of ours
    # (full mode requires one; tests of full mode pass dhcp={"mode": "full"}).
    dhcp = app_kw.pop("dhcp", {"mode": "proxy"})
    port = free_port()
    settings = Settings(
        state_dir=state_dir,
        http={"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},  # type: ignore[arg-type]
        api={"listen": "127.0.0.1:0"},  # type: ignore[arg-type]
        dhcp=dhcp,
    )
    events = MemoryEventSink()
    directory = MachineDirectory(store)
    rt = WebRuntime(
        settings=settings, store=store, events=events, instance="test:1", machines=directory.current
    )
    await directory.refresh()
    server = WebServer(rt, app=create_app(rt, api_token=API_TOKEN, **app_kw), idle_timeout_s=idle)
    await server.start()
    return Env(
        rt=rt,
        directory=directory,
        events=events,
        server=server,
        base=f"http://127.0.0.1:{server.port}",
        state_dir=state_dir,
        api=f"http://127.0.0.1:{server.api_port}",
    )


async def add_asset_set(
    env: Env, name: str = "talos", *, arch: str = "amd64", size: int = 4096, cmdline: str = ""
) -> tuple[bytes, bytes]:
    """Import a small asset set through the real AssetSets code; returns (kernel, initramfs)."""
    work = env.state_dir / "src"
    work.mkdir(exist_ok=True)
    kernel = bytes(i % 251 for i in range(size))
    initramfs = bytes((i * 7) % 253 for i in range(size * 2))
    (work / f"{name}-k").write_bytes(kernel)
    (work / f"{name}-i").write_bytes(initramfs)
    await env.app_ctx.assets.add(name, work / f"{name}-k", work / f"{name}-i", arch=arch, cmdline=cmdline)
    return kernel, initramfs


MAC1 = "52:54:00:00:00:01"
MAC1B = "52:54:00:00:01:01"
MAC2 = "52:54:00:00:00:02"
UUID1 = "11111111-2222-3333-4444-555555555501"
UUID2 = "11111111-2222-3333-4444-555555555502"


def hexhyp(mac: str) -> str:
    return mac.replace(":", "-")


class FakePower:
    """A behavioural power service: keeps each machine's power state and boot device."""

    def __init__(
        self, machines: set[str], *, broken: set[str] | None = None, crashing: set[str] | None = None
    ) -> None:
        self.machines = machines
        self.broken = broken or set()
        self.crashing = crashing or set()
        self.power: dict[str, str] = {}
        self.bootdev: dict[str, tuple[str, bool]] = {}
        self.calls: list[tuple[str, str, dict[str, object]]] = []

    async def power_action(self, machine_name: str, action: str, **kw: object) -> dict[str, object]:
        self.calls.append((machine_name, action, kw))
        if machine_name not in self.machines:
            raise KeyError(machine_name)
        if machine_name in self.broken:
            bmc = "ipmi 192.0.2.1:623"
            raise PowerFailedError(
                machine_name,
                action,
                kind="unreachable",
                bmc=bmc,
                message=f"{bmc}: no answer to IPMI session setup within 5.0 s",
                check=("bmc.address", "bmc.port"),
            )
        if machine_name in self.crashing:
            raise TimeoutError("a bug in the power service")
        if action in ("on", "off"):
            self.power[machine_name] = action
        elif action in ("cycle", "reset"):
            self.power[machine_name] = "on"
        elif action == "bootdev":
            self.bootdev[machine_name] = (str(kw["device"]), bool(kw["persistent"]))
        return {"power": self.power.get(machine_name, "off")}
