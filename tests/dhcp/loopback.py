"""An in-process DhcpService on 127.0.0.1 (own loop in a thread) and a blocking UDP client."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from provisioner.dhcp.leases import LeaseStore, MemoryLeaseStore
from provisioner.dhcp.service import DhcpService, TransportOptions
from provisioner.events import MemoryEventSink
from provisioner.matching import MachineIndex
from provisioner.model import MachineSummary
from provisioner.settings import DhcpSettings
from provisioner.store.db import create_schema, make_engine
from provisioner.store.leases import SqlLeaseStore

KNOWN_MAC = "52:54:00:77:00:11"
MACHINES = [
    MachineSummary(name="lo-n1", macs=(KNOWN_MAC,), ip="127.0.0.11", hostname="lo-n1"),
    MachineSummary(name="lo-n2", macs=("52:54:00:77:00:12",), ip="127.0.0.12", pxe_allowed=False),
]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Loopback:
    """The running service and a client socket that receives its replies."""

    def __init__(
        self,
        service: DhcpService,
        loop: asyncio.AbstractEventLoop,
        port: int,
        client: socket.socket,
        events: MemoryEventSink,
    ) -> None:
        self.service = service
        self.loop = loop
        self.port = port
        self.client = client
        self.events = events

    def send(self, data: bytes, port: int | None = None) -> None:
        self.client.sendto(data, ("127.0.0.1", port or self.port))

    def replies(self, timeout: float = 0.3) -> list[bytes]:
        """Everything that arrives within `timeout` seconds."""
        out = []
        self.client.settimeout(timeout)
        try:
            while True:
                data, _ = self.client.recvfrom(4096)
                out.append(data)
                self.client.settimeout(0.05)
        except TimeoutError:
            pass
        return out

    def counters(self) -> dict[str, int]:
        return dict(asyncio.run_coroutine_threadsafe(_counters(self.service), self.loop).result(5))


async def _counters(service: DhcpService) -> Any:
    return service.counters()


@contextmanager
def loopback_service(
    *,
    mode: str = "full",
    store: LeaseStore | None = None,
    machines: list[MachineSummary] | None = None,
    db_url: str | None = None,
    **settings: Any,
) -> Iterator[Loopback]:
    """Start the service on 127.0.0.1:<free port>, replies to the client socket.

    `db_url`: leases in that SQL database (schema created), else in `store` or in memory.
    """
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    cport = client.getsockname()[1]
    port = free_udp_port()
    cfg: dict[str, Any] = {
        "mode": mode,
        "interfaces": ("lo",),
        "port": port,
        "proxy_port": free_udp_port(),
        "listen_address": "127.0.0.1",
        "server_address": "127.0.0.1",
        "relay_agents": ("127.0.0.1",),
        "subnet": [
            {
                "cidr": "127.0.0.0/8",
                "pool": "127.0.0.100-127.0.0.250",
                "gateway": "127.0.0.1",
                "dns": ["127.0.0.1"],
                "lease_time": 600,
            }
        ],
    }
    cfg.update(settings)
    dhcp = DhcpSettings.model_validate(cfg)
    events = MemoryEventSink()
    index = MachineIndex(MACHINES if machines is None else machines)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    engine = make_engine(db_url) if db_url is not None else None
    leases = (
        SqlLeaseStore(engine) if engine is not None else (store if store is not None else MemoryLeaseStore())
    )
    service = DhcpService(
        dhcp,
        http_base_url="http://127.0.0.1:8080",
        leases=leases,
        machines=lambda: index,
        events=events,
        options=TransportOptions(
            client_port=cport,
            relay_port=cport,
            broadcast_address="127.0.0.1",
            bind_to_device=False,
            sync_interval_s=0,
        ),
    )
    try:
        if engine is not None:
            asyncio.run_coroutine_threadsafe(create_schema(engine), loop).result(30)
        asyncio.run_coroutine_threadsafe(service.start(), loop).result(10)
        yield Loopback(service, loop, port, client, events)
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(10)
        if engine is not None:
            asyncio.run_coroutine_threadsafe(leases.close(), loop).result(10)
            # The engine's connections belong to this loop: dispose of them on it.
            asyncio.run_coroutine_threadsafe(engine.dispose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        client.close()
