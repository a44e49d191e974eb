"""What every handler reaches through the application: one typed `web.AppKey`.

`WebContext.rt` is a `WebRuntime`: the ports the web layer uses from the rest of the
daemon (store, events, machine index, counters, power, config renderer, kernel logs), given by the
composition root (provisioner/daemon/) at construction. The web layer never imports the
daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from provisioner.events import EventSink
from provisioner.matching import MachineIndex
from provisioner.settings import Settings
from provisioner.store.assets import AssetSets
from provisioner.store.holds import WindowHolds
from provisioner.store.repository import SqlStore
from provisioner.store.tokens import ConfigTokens
from provisioner.web.ipxe import IpxeRenderer
from provisioner.web.metrics import WebMetrics
from provisioner.web.protocols import ConfigRenderer, KernelLogs, PowerService
from provisioner.web.ratelimit import RefusalLimiter

__all__ = [
    "ACTOR",
    "CTX",
    "DEFAULT_CONFIG_TOKEN_TTL_S",
    "STARTED",
    "TOKEN_ID",
    "TOKEN_MACHINE",
    "WebContext",
    "WebRuntime",
    "ctx",
]

DEFAULT_CONFIG_TOKEN_TTL_S = 3600.0
"""How long a config token in an iPXE script stays valid: kernel + initramfs download and
Talos's first boot take minutes; an hour leaves room for slow links without leaving
tokens lying around for days."""


@dataclass
class WebRuntime:
    """The web layer's ports (what it needs from outside), wired by the composition root."""

    settings: Settings
    store: SqlStore
    """The store (SQL: config tokens and asset sets are SQL repositories over it)."""
    events: EventSink
    instance: str
    machines: Callable[[], MachineIndex]
    """The current machine index (provisioner/directory.py)."""
    counter_sources: dict[str, Callable[[], Mapping[str, int]]] = field(default_factory=dict)
    """Each part's plain counters by part name, for /metrics."""
    power: PowerService | None = None
    """Power actions for the API (503 while absent)."""
    renderer: ConfigRenderer | None = None
    """Renders a machine's Talos config for /config (503 while absent)."""
    logs: KernelLogs | None = None
    """The nodes' kernel log rings for /api/v1/machines/{name}/logs (503 while absent: telemetry off)."""

    def counters(self) -> dict[str, dict[str, int]]:
        """Every part's counters, by part name."""
        return {name: dict(source()) for name, source in self.counter_sources.items()}


@dataclass
class WebContext:
    """The web layer's state: its ports plus what the web layer owns."""

    rt: WebRuntime
    metrics: WebMetrics
    ipxe: IpxeRenderer
    tokens: ConfigTokens
    assets: AssetSets
    api_token: str
    holds: WindowHolds
    token_ttl_s: float = DEFAULT_CONFIG_TOKEN_TTL_S
    config_limiter: RefusalLimiter = field(default_factory=RefusalLimiter)

    @property
    def assets_dir(self) -> Path:
        """Where asset files live."""
        return self.assets.root


CTX = web.AppKey("provisioner_web", WebContext)


def ctx(request: web.Request) -> WebContext:
    """The web context of a request."""
    return request.app[CTX]


ACTOR = web.RequestKey("provisioner_actor", str)
"""Who is calling the API (set by the auth middleware)."""
STARTED = web.RequestKey("provisioner_started", float)
"""perf_counter() when the request reached the first middleware."""
TOKEN_ID = web.RequestKey("provisioner_token_id", int)
TOKEN_MACHINE = web.RequestKey("provisioner_token_machine", str)
