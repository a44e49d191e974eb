"""The web part of the daemon: the machine listener and the operators' API listener.

`[http] listen` and `[api] listen` (optionally TLS) are two aiohttp runners sharing one context.

Connection limits (docs/threats.md C7): header lines and fields are capped at 8 KiB, at most 64
headers, request bodies at 64 KiB; a connection that sends no complete request within
`IDLE_TIMEOUT_S` (idle keep-alive, or a slowloris trickle) is closed.
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from provisioner.startup import StartupError, binding
from provisioner.web.app import create_api_app, create_app
from provisioner.web.context import WebRuntime
from provisioner.web.tls import server_context

__all__ = ["IDLE_TIMEOUT_S", "WebServer"]

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 5.0


class WebServer:
    """The HTTP servers on `[http] listen` and `[api] listen` (a daemon part): `port`, `api_port`."""

    def __init__(
        self,
        rt: WebRuntime,
        *,
        app: web.Application | None = None,
        api_app: web.Application | None = None,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.app = app if app is not None else create_app(rt)
        self.api_app = api_app if api_app is not None else create_api_app(self.app)
        self._rt = rt
        self._idle = idle_timeout_s
        self._runners: list[web.AppRunner] = []
        self.port = 0
        self.api_port = 0

    async def _serve(
        self,
        app: web.Application,
        host: str,
        port: int,
        setting: str,
        value: str,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        runner = web.AppRunner(
            app,
            access_log=None,  # our own access log redacts tokens; aiohttp's would not
            keepalive_timeout=self._idle,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            handle_signals=False,
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True, ssl_context=ssl_context)
        with binding(setting, value):
            await site.start()
        addresses = runner.addresses
        return int(addresses[0][1]) if addresses else port

    async def start(self) -> None:
        """Bind and serve both listeners (port 0 picks a free port; see `port`, `api_port`).

        A failed bind raises `StartupError` naming the setting; nothing is left half-started.
        """
        settings = self._rt.settings
        host, port = settings.http.host_port
        api_host, api_port = settings.api.host_port
        if (host, port) == (api_host, api_port) and port != 0:
            raise StartupError("api.listen", settings.api.listen, "must differ from http.listen")
        try:
            self.port = await self._serve(self.app, host, port, "http.listen", settings.http.listen)
            log.info("http listening on %s:%d", host, self.port)
            try:
                tls = server_context(settings)
            except (OSError, ValueError) as exc:
                cert = settings.api.tls_cert or settings.state_dir
                raise StartupError("api.tls_cert", cert, f"cannot load the API certificate: {exc}") from exc
            self.api_port = await self._serve(
                self.api_app, api_host, api_port, "api.listen", settings.api.listen, tls
            )
            log.info("api listening on %s://%s:%d", "https" if tls else "http", api_host, self.api_port)
        except BaseException:
            await self.stop()  # nothing half-started: the runners go with the failed bind
            raise

    async def stop(self) -> None:
        """Stop accepting, finish or cancel in-flight requests, release the sockets."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
