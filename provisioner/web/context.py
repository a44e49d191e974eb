"""What every handler reaches through the application: one typed `web.AppKey`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from provisioner.daemon import Runtime
from provisioner.store.assets import AssetSets
from provisioner.store.holds import WindowHolds
from provisioner.store.tokens import ConfigTokens
from provisioner.web.ipxe import IpxeRenderer
from provisioner.web.metrics import WebMetrics
from provisioner.web.ratelimit import RefusalLimiter

__all__ = [
    "ACTOR",
    "CTX",
    "DEFAULT_CONFIG_TOKEN_TTL_S",
    "STARTED",
    "TOKEN_ID",
    "TOKEN_MACHINE",
    "WebContext",
    "ctx",
]

DEFAULT_CONFIG_TOKEN_TTL_S = 3600.0
"""How long a config token in an iPXE script stays valid: kernel + initramfs download and
Talos's first boot take minutes; an hour leaves room for slow links without leaving
tokens lying around for days."""


@dataclass
class WebContext:
    """The web layer's state: the runtime plus what the web layer owns."""

    rt: Runtime
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
