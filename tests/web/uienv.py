"""The console under test: the real web app in a server thread, Debian's chromium via Selenium.

Selenium is synchronous, so the daemon's web server runs on its own event loop in a
thread; tests reach the store through `UiServer.call`. The power service is the real
one (`PowerService` + `MachinePower`) with `fake` BMC drivers, so a click on "Power on"
travels page → CSRF check → power service → fake BMC.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from provisioner.daemon import Runtime
from provisioner.eventlog import DatabaseEventSink
from provisioner.events import Event, utcnow
from provisioner.power.machines import MachinePower
from provisioner.power.service import PowerService
from provisioner.settings import Settings
from provisioner.store.db import create_schema
from provisioner.store.repository import Store
from provisioner.store.tables import BmcRow, ClusterRow, MachineRow, NicRow
from provisioner.web.app import create_app
from provisioner.web.service import WebServer
from provisioner.web.ui.app import UI, UI_APP

T = TypeVar("T")

TOKEN = "ui-test-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@dataclass
class UiServer:
    """The web app (with the console) on a free loopback port, in a thread."""

    root: Path
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    base: str = ""
    rt: Runtime | None = None
    _server: WebServer | None = None
    _power: PowerService | None = None
    _sink: DatabaseEventSink | None = None
    _thread: threading.Thread | None = None

    def start(self, seed: Callable[[Store], Awaitable[None]] | None = None) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, name="ui-server", daemon=True)
        self._thread.start()
        self.call(self._start(seed))

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def store(self) -> Store:
        assert self.rt is not None
        return self.rt.store

    async def _start(self, seed: Callable[[Store], Awaitable[None]] | None) -> None:
        state_dir = self.root / "state"
        state_dir.mkdir(exist_ok=True)
        store = Store.open(f"sqlite+aiosqlite:///{self.root}/provisioner.db", state_dir)
        await create_schema(store.engine)
        if seed is not None:
            await seed(store)
        settings = Settings(
            state_dir=state_dir,
            http={"listen": "127.0.0.1:0", "public_url": "http://127.0.0.1:8080"},  # type: ignore[arg-type]
            api={"listen": "127.0.0.1:0"},  # type: ignore[arg-type]
        )
        self._sink = DatabaseEventSink(store, interval=0.05)
        await self._sink.start()
        rt = Runtime(
            settings=settings, store=store, events=self._sink, instance="ui-test", stopping=asyncio.Event()
        )
        await rt.refresh_machines()
        self._power = PowerService(settings.power, self._sink)
        await self._power.start()
        rt.services["power"] = MachinePower(store, self._power, self._sink)
        self._server = WebServer(rt, app=create_app(rt, api_token=TOKEN), idle_timeout_s=3.0)
        await self._server.start()
        # Pages render from the console's in-memory copy: wait for its first load.
        await asyncio.wait_for(self._server.api_app[UI_APP][UI].feed.ready.wait(), 30)
        self.rt = rt
        self.base = f"http://127.0.0.1:{self._server.api_port}"  # the console is on [api]

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
        if self._power is not None:
            await self._power.stop()
        if self._sink is not None:
            await self._sink.stop()
        if self.rt is not None:
            await self.rt.store.close()

    def stop(self) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self.loop.close()

    def power_status(self, name: str) -> str:
        """Ask the machine's (fake) BMC for its power state, through the power service."""
        assert self.rt is not None
        result = self.call(self.rt.services["power"].power_action(name, "status"))
        return str(result["state"])


async def add_cluster(store: Store, name: str = "prod") -> None:
    now = utcnow()
    async with store.session() as session:
        session.add(
            ClusterRow(
                name=name,
                talos_version="1.13.0",
                kubernetes_version="1.33.0",
                endpoint="https://10.77.0.10:6443",
                asset_set="talos-1.13",
                created_at=now,
                updated_at=now,
            )
        )


async def add_machines(store: Store, machines: list[dict[str, Any]]) -> None:
    """Insert machines in one transaction (each dict: MachineRow fields + `mac`, `bmc`)."""
    now = utcnow()
    async with store.session() as session:
        rows = []
        for given in machines:
            spec = dict(given)
            mac = spec.pop("mac")
            bmc = spec.pop("bmc", None)
            spec.setdefault("state_since", now)
            row = MachineRow(created_at=now, updated_at=now, **spec)
            session.add(row)
            rows.append((row, mac, bmc))
        await session.flush()
        for row, mac, bmc in rows:
            session.add(NicRow(machine_id=row.id or 0, mac=mac, position=0))
            if bmc is not None:
                session.add(BmcRow(machine_id=row.id or 0, **bmc))


async def add_run(store: Store, name: str, start: datetime, stages: list[tuple[str, float, str]]) -> None:
    """Transition events of one provisioning run: (state, seconds after the previous, reason)."""
    at = start
    before = "Registered"
    events = []
    for state, after_s, reason in stages:
        at += timedelta(seconds=after_s)
        data = {"from": before, "to": state, "reason": reason}
        events.append(
            Event(kind="machine.transition", at=at, machine=name, message=f"{before} -> {state}", data=data)
        )
        before = state
    await store.append_events(events)


def browser() -> Any:
    """Headless Debian chromium through /usr/bin/chromedriver; never a download."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            msg = f"{path} missing: apt-get install chromium chromium-driver (scripts/system-packages.txt)"
            raise RuntimeError(msg)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def http(
    method: str, url: str, *, cookie: str = "", data: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """One request without following redirects: (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    body = None
    headers = {}
    if data is not None:
        body = "&".join(
            f"{urllib.request.quote(k)}={urllib.request.quote(v)}" for k, v in data.items()
        ).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        headers["Cookie"] = cookie
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310 - loopback
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def as_json(text: str) -> Any:
    return json.loads(text)
