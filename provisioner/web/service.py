"""The web service in the daemon: an aiohttp AppRunner + TCPSite on `settings.http.listen`.

Connection limits (docs/threats.md C7): header lines and fields are capped at 8 KiB, at most 64
headers, request bodies at 64 KiB; a connection that sends no complete request within
`IDLE_TIMEOUT_S` (idle keep-alive, or a slowloris trickle) is closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from provisioner.daemon import Runtime
from provisioner.startup import binding
from provisioner.web.app import create_app

__all__ = ["IDLE_TIMEOUT_S", "WebServer", "web_service"]

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 5.0


class WebServer:
    """The running HTTP server (registered as `rt.services["web"]`)."""

    def __init__(
        self, rt: Runtime, *, app: web.Application | None = None, idle_timeout_s: float = IDLE_TIMEOUT_S
    ) -> None:
        self.app = app if app is not None else create_app(rt)
        self._rt = rt
        self._idle = idle_timeout_s
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve (port 0 picks a free port; see `self.port`)."""
        host, port = self._rt.settings.http.host_port
        self._runner = web.AppRunner(
            self.app,
            access_log=None,  # our own access log redacts tokens; aiohttp's would not
            keepalive_timeout=self._idle,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            handle_signals=False,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024, reuse_address=True)
        try:
            with binding("http.listen", self._rt.settings.http.listen):
                await site.start()
        except BaseException:
            await self.stop()  # nothing half-started: the runner goes with the failed bind
            raise
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        log.info("http listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        """Stop accepting, finish or cancel in-flight requests, release the socket."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def web_service(rt: Runtime) -> AsyncIterator[None]:
    """The daemon's web part (see provisioner/services.py)."""
    server = WebServer(rt)
    await server.start()
    rt.services["web"] = server
    try:
        yield
    finally:
        rt.services.pop("web", None)
        await server.stop()
