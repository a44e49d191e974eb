"""The application factory: routes, middlewares (errors, auth), access log and metrics.

Per-request work is kept small: one timestamp in a middleware, and at response-head time
(`on_response_prepare`) one metrics update and one JSON access-log line. Query strings are
logged with the config token redacted (`t=REDACTED`).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from provisioner.daemon import Runtime
from provisioner.settings import Settings
from provisioner.store.assets import AssetSets
from provisioner.store.tokens import ConfigTokens
from provisioner.tftp.files import FileSource
from provisioner.web import assets, boot, config, firmware, health
from provisioner.web.api import routes as api_routes
from provisioner.web.auth import API_PREFIX, auth_middleware, load_or_create_api_token
from provisioner.web.context import ACTOR, CTX, DEFAULT_CONFIG_TOKEN_TTL_S, STARTED, WebContext
from provisioner.web.ipxe import IpxeRenderer
from provisioner.web.metrics import WebMetrics

__all__ = ["MAX_BODY", "create_app", "redact"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("provisioner.web.access")

MAX_BODY = 64 * 1024  # API bodies are small JSON objects (docs/threats.md C7)
_TOKEN_RE = re.compile(r"(^|[?&])(t=)[^&]*")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def redact(path_qs: str) -> str:
    """A request target with any config token replaced by REDACTED."""
    return _TOKEN_RE.sub(r"\1\2REDACTED", path_qs)


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time the request; turn errors into short answers (JSON under /api), never a trace."""
    request[STARTED] = time.perf_counter()
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith(API_PREFIX) or exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return web.json_response(
            {"error": exc.reason, "detail": (detail or "").strip()}, status=exc.status, headers=_keep(exc)
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, redact(request.path_qs))
        if request.path.startswith(API_PREFIX):
            return web.json_response(
                {"error": "Internal Server Error", "detail": "internal error"}, status=500
            )
        return web.Response(status=500, text="internal error\n")


def _keep(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in {"Allow", "WWW-Authenticate", "Retry-After"}}


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    started = request.get(STARTED)
    seconds = time.perf_counter() - started if started is not None else 0.0
    route = _route_of(request)
    request.app[CTX].metrics.observe(route, request.method, response.status, seconds)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            json.dumps(
                {
                    "remote": request.remote,
                    "method": request.method,
                    "target": redact(request.path_qs),
                    "route": route,
                    "status": response.status,
                    "length": response.content_length,
                    "ms": round(seconds * 1000, 3),
                    "actor": request.get(ACTOR),
                    "agent": request.headers.get("User-Agent", "")[:120],
                },
                separators=(",", ":"),
            )
        )


def _telemetry_args(settings: Settings) -> tuple[str, ...]:
    """`talos.events.sink=` and `talos.logging.kernel=` for the install script (docs/talos.md)."""
    from urllib.parse import urlsplit

    from provisioner.telemetry.settings import kernel_args

    public_host = urlsplit(settings.http.base_url).hostname or settings.http.host_port[0]
    return kernel_args(settings.telemetry, settings.http.host_port[0], public_host)


def create_app(
    rt: Runtime,
    *,
    api_token: str | None = None,
    token_ttl_s: float = DEFAULT_CONFIG_TOKEN_TTL_S,
) -> web.Application:
    """The aiohttp application for a runtime (token from state_dir/api-token by default)."""
    settings = rt.settings
    mimetypes.init()  # FileResponse consults it; load it now, not on the first download
    token = api_token if api_token is not None else load_or_create_api_token(settings.state_dir)
    context = WebContext(
        rt=rt,
        metrics=WebMetrics(rt.counters, rt.machines),
        ipxe=IpxeRenderer(
            settings.http.base_url, settings.http.templates_dir, telemetry_args=_telemetry_args(settings)
        ),
        tokens=ConfigTokens(rt.store),
        assets=AssetSets(rt.store, settings.state_dir / "assets"),
        api_token=token,
        token_ttl_s=token_ttl_s,
    )
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(token)],
        client_max_size=MAX_BODY,
        handler_args={"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64},
    )
    app[CTX] = context
    app[firmware.FIRMWARE_KEY] = FileSource.from_settings(settings.tftp)
    app.on_response_prepare.append(_on_prepare)
    app.add_routes(health.routes())
    app.add_routes(boot.routes())
    app.add_routes(assets.routes())
    app.add_routes(config.routes())
    app.add_routes(firmware.routes())
    app.add_routes([web.get("/metrics", context.metrics.handle)])
    app.add_routes(api_routes())
    return app
