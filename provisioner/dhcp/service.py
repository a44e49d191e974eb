"""`DhcpService`: the asyncio shell around the sans-I/O cores, the lease store and sockets.

Per interface: one `DhcpServer` core answering as that interface's address, a socket on
the DHCP port (unless `proxy_only_4011`) and, in proxy mode, one on the PXE port 4011.
All cores share one `LeaseBook`. Lease writes go through a `GroupCommitter`: an ACK is
sent only after the transaction holding its lease committed (docs/threats.md G1). With a shared
database, a sync task folds in the leases other instances wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from provisioner.dhcp.book import LeaseBook
from provisioner.dhcp.config import DEFAULT_CLIENT_PORT, DEFAULT_RELAY_PORT, config_from_settings
from provisioner.dhcp.leases import GroupCommitter, LeaseStore, SharedLeaseStore, StoreError
from provisioner.dhcp.limits import DiscoveredMachine
from provisioner.dhcp.pxe import BootFiles
from provisioner.dhcp.server import DhcpServer, PendingAck
from provisioner.dhcp.transport import DhcpEndpoint, interface_address, open_udp_socket
from provisioner.events import Event, EventSink
from provisioner.matching import MachineIndex
from provisioner.settings import DhcpSettings
from provisioner.startup import StartupError, os_problem

__all__ = ["DhcpService", "TransportOptions"]

log = logging.getLogger(__name__)
SYNC_INTERVAL_S = 2.0
TIMER_INTERVAL_S = 1.0


def _bind_error(exc: OSError, iface: str, listen: str, port: int, *, is_proxy: bool) -> StartupError:
    """The setting to blame for a DHCP socket that cannot be opened (SO_BINDTODEVICE, bind)."""
    if exc.errno == errno.ENODEV:
        return StartupError("dhcp.interfaces", iface, os_problem(exc))
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupError("dhcp.listen_address", listen, os_problem(exc))
    setting = "dhcp.proxy_port" if is_proxy else "dhcp.port"
    return StartupError(setting, f"{listen}:{port} on {iface}", os_problem(exc))


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """Knobs tests and benchmarks change; production keeps the defaults."""

    client_port: int = DEFAULT_CLIENT_PORT
    relay_port: int = DEFAULT_RELAY_PORT
    broadcast_address: str = "255.255.255.255"
    bind_to_device: bool = True
    instance: str = ""
    sync_interval_s: float = SYNC_INTERVAL_S
    boot_files: BootFiles | None = None


class DhcpService:
    """Full DHCP, proxyDHCP and relay service; `start()`/`stop()`/`counters()`."""

    def __init__(
        self,
        settings: DhcpSettings,
        *,
        http_base_url: str,
        leases: LeaseStore,
        machines: Callable[[], MachineIndex],
        events: EventSink,
        discovered: Callable[[DiscoveredMachine], None] | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        """Configure; nothing is opened until `start()`."""
        self.settings = settings
        self.http_base_url = http_base_url
        self.opts = options or TransportOptions()
        self.store = leases
        self.machines = machines
        self.events = events
        self.discovered = discovered
        self.book = LeaseBook()
        self.cores: list[DhcpServer] = []
        self._counters: Counter[str] = Counter()
        self._committer = GroupCommitter(self.store)
        self._endpoints: list[DhcpEndpoint] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._last_sync = 0.0
        self.ready = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load leases, open the sockets, start the commit, timer and sync tasks."""
        if self.settings.mode == "off":
            self.ready.set()
            return
        self._last_sync = time.time()
        loaded = await self.store.load()
        self.book.load(loaded.leases)
        self._counters["leases_loaded"] = len(loaded.leases)
        self._counters["lease_rows_skipped"] = loaded.bad_rows
        self._committer.start()
        loop = asyncio.get_running_loop()
        try:
            for iface in self.settings.interfaces:
                await self._open_interface(loop, iface)
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(loop.create_task(self._timer()))
        if self.opts.sync_interval_s > 0:
            self._tasks.append(loop.create_task(self._sync()))
        self.ready.set()

    async def _open_interface(self, loop: asyncio.AbstractEventLoop, iface: str) -> None:
        listen = str(self.settings.listen_address)
        server_ip = str(self.settings.server_address or interface_address(iface) or listen)
        config = config_from_settings(
            self.settings,
            server_ip=server_ip,
            http_base_url=self.http_base_url,
            instance=self.opts.instance,
            client_port=self.opts.client_port,
            relay_port=self.opts.relay_port,
            broadcast_address=self.opts.broadcast_address,
            boot_files=self.opts.boot_files,
        )
        core = DhcpServer(config, self.machines, self.book)
        self.cores.append(core)
        device = iface if self.opts.bind_to_device else None
        ports: list[tuple[int, bool]] = []
        if not (self.settings.mode == "proxy" and self.settings.proxy_only_4011):
            ports.append((self.settings.port, False))
        if self.settings.mode == "proxy":
            ports.append((self.settings.proxy_port, True))
        for port, is_proxy in ports:
            try:
                sock = open_udp_socket(listen, port, device)
            except OSError as exc:
                raise _bind_error(exc, iface, listen, port, is_proxy=is_proxy) from exc

            def handler(
                endpoint: DhcpEndpoint, data: bytes, addr: tuple[str, int], core: DhcpServer = core
            ) -> None:
                core.receive_datagram(data, addr, time.time(), proxy_port=endpoint.proxy_port)

            def after_batch(endpoint: DhcpEndpoint, core: DhcpServer = core) -> None:
                self._drain(core, endpoint)

            endpoint = DhcpEndpoint(sock, handler, after_batch, self._counters, proxy_port=is_proxy)
            endpoint.start(loop)
            self._endpoints.append(endpoint)
        log.info("dhcp %s on %s as %s, ports %s", self.settings.mode, iface, server_ip, [p for p, _ in ports])

    async def stop(self) -> None:
        """Close sockets, stop tasks, flush pending lease writes."""
        for endpoint in self._endpoints:
            endpoint.close()
        self._endpoints.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._committer.stop()

    def counters(self) -> Mapping[str, int]:
        """Received / answered / dropped_<reason> and friends, summed over interfaces."""
        total: Counter[str] = Counter(self._counters)
        for core in self.cores:
            total.update(core.counters)
        total["leases"] = len(self.book)
        total["offers_held"] = self.book.offers_held
        total["commit_batches"] = self._committer.batches
        return dict(total)

    # -- the datagram path --------------------------------------------------------------

    def _drain(self, core: DhcpServer, endpoint: DhcpEndpoint) -> None:
        for out in core.datagrams_to_send():
            endpoint.send(out.data, out.addr)
        for pending in core.commits_to_write():
            future = self._committer.submit(pending.lease)
            future.add_done_callback(
                lambda f, p=pending: self._committed(core, endpoint, p, f)  # type: ignore[misc]
            )
        while (event := core.next_event()) is not None:
            if isinstance(event, Event):
                self.events.emit(event)
            elif self.discovered is not None:
                try:
                    self.discovered(event)
                except Exception:
                    log.exception("discovered-machine callback failed")

    def _committed(
        self, core: DhcpServer, endpoint: DhcpEndpoint, pending: PendingAck, future: asyncio.Future[bool]
    ) -> None:
        exc = future.exception()
        if exc is not None:
            # Not durable: no ACK, no NAK; the client retries. (Kea: stop-retry-exit.)
            self._counters["dropped_store_error"] += 1
            core.book.restore(pending.lease, pending.previous)
            log.warning("lease write failed, not answering: %s", exc)
            return
        core.commit_done(pending, ok=future.result())
        if not future.result() and isinstance(self.store, SharedLeaseStore):
            asyncio.get_running_loop().create_task(self._learn(pending.lease.ip))
        self._drain(core, endpoint)

    async def _learn(self, ip: str) -> None:
        if isinstance(self.store, SharedLeaseStore):
            try:
                winner = await self.store.fetch(ip)
            except Exception:
                return
            if winner is not None and self.cores:
                self.cores[0].learn(winner)

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(TIMER_INTERVAL_S)
            now = time.time()
            for core in self.cores:
                if now >= core.get_timer():
                    core.handle_timer(now)

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(self.opts.sync_interval_s)
            since = self._last_sync - self.opts.sync_interval_s  # overlap: clock skew, slow commits
            self._last_sync = time.time()
            try:
                changed = await self.store.changed_since(since, exclude_instance=self.opts.instance)
            except (StoreError, OSError, RuntimeError) as exc:
                log.warning("lease sync failed: %s", exc)
                continue
            except Exception:
                log.exception("lease sync failed")
                continue
            for lease in changed:
                if lease.instance != self.opts.instance and self.cores:
                    self.cores[0].learn(lease)
