"""The application factories: routes, middlewares (errors, auth), access log and metrics.

Two applications share one `WebContext` (issue 14, THREATS F1): the machine-facing one
(`create_app`, on `[http] listen`) serves only boot scripts, assets, firmware, configs and
/healthz; the operators' one (`create_api_app`, on `[api] listen`) serves /api/v1/*
(OpenAPI included), /metrics and /healthz. Nothing under /api/v1 exists on the machine
listener, so neither the bearer token nor power control travels on the PXE network.

Per-request work is kept small: one timestamp in a middleware, and at response-head time
(`on_response_prepare`) one metrics update and one JSON access-log line. Query strings are
logged with the config token redacted (`t=REDACTED`).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import unquote_plus, urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from provisioner.settings import Settings
from provisioner.store.assets import AssetSets
from provisioner.store.holds import WindowHolds
from provisioner.store.tokens import ConfigTokens
from provisioner.telemetry.settings import kernel_args
from provisioner.tftp.files import FileSource
from provisioner.web import assets, boot, config, firmware, health
from provisioner.web.api import routes as api_routes
from provisioner.web.auth import API_PREFIX, auth_middleware, load_or_create_api_token
from provisioner.web.context import ACTOR, CTX, DEFAULT_CONFIG_TOKEN_TTL_S, STARTED, WebContext, WebRuntime
from provisioner.web.ipxe import IpxeRenderer
from provisioner.web.metrics import WebMetrics
from provisioner.web.protocols import KernelLogs
from provisioner.web.ui import UiDeps, mount_ui
from provisioner.web.ui.feed import store_source
from provisioner.web.ui.users import UserTokens

__all__ = ["MAX_BODY", "create_api_app", "create_app", "redact"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("provisioner.web.access")

MAX_BODY = 64 * 1024  # API bodies are small JSON objects (docs/threats.md C7)
TOKEN_KEY = "t"  # noqa: S105 - the query key, not a secret

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def redact(path_qs: str) -> str:
    """A request target with any config token replaced by REDACTED.

    A parameter is the token if its key, percent-decoded until stable, is `t`: aiohttp
    decodes `%74=` to `t=` and accepts the token that way, so the log must not show it.
    """
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path_qs
    parts = []
    for param in query.split("&"):
        key, eq, _ = param.partition("=")
        parts.append(f"{key}=REDACTED" if eq and _decoded(key) == TOKEN_KEY else param)
    return f"{path}?{'&'.join(parts)}"


def _decoded(value: str) -> str:
    for _ in range(4):
        decoded = unquote_plus(value)
        if decoded == value:
            break
        value = decoded
    return value


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
    # config_dict: requests to a mounted sub-application (the console) see its app first.
    request.config_dict[CTX].metrics.observe(route, request.method, response.status, seconds)
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
    public_host = urlsplit(settings.http.base_url).hostname or settings.http.host_port[0]
    return kernel_args(settings.telemetry, settings.http.host_port[0], public_host)


def create_app(
    rt: WebRuntime,
    *,
    api_token: str | None = None,
    token_ttl_s: float = DEFAULT_CONFIG_TOKEN_TTL_S,
) -> web.Application:
    """The machine-facing application over the web layer's ports (API token: state_dir/api-token)."""
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
        holds=WindowHolds(rt.store),
        token_ttl_s=token_ttl_s,
    )
    app = _application([error_middleware])
    app[CTX] = context
    app[firmware.FIRMWARE_KEY] = FileSource.from_settings(settings.tftp)
    app.add_routes(health.routes())
    app.add_routes(boot.routes())
    app.add_routes(assets.routes())
    app.add_routes(config.routes())
    app.add_routes(firmware.routes())
    return app


def create_api_app(machine_app: web.Application) -> web.Application:
    """The operators' application, sharing the machine application's context."""
    context = machine_app[CTX]
    app = _application([error_middleware, auth_middleware(context.api_token)])
    app[CTX] = context
    app.add_routes(health.routes())
    app.add_routes([web.get("/metrics", context.metrics.handle)])
    app.add_routes(api_routes())
    rt, settings = context.rt, context.rt.settings
    users = UserTokens(settings.state_dir, context.api_token)
    # The operator console sits with the REST API (it is an operator surface, never a
    # machine-facing one): see docs/ui.md.
    mount_ui(
        app,
        UiDeps(
            store=rt.store,
            check_token=users.check,
            still_valid=users.still_valid,
            feed_source=store_source(rt.store),
            power=lambda: rt.power,
            assets=context.assets,
            tokens=context.tokens,
            events=rt.events,
            templates_dir=settings.http.templates_dir,
            kernel_log=_kernel_tail(rt.logs) if rt.logs is not None else None,
        ),
    )
    return app


def _kernel_tail(logs: KernelLogs) -> Callable[[str, int], Awaitable[Sequence[str]]]:
    """The console's view of a machine's kernel log: its newest lines as text."""

    async def tail(machine: str, limit: int) -> Sequence[str]:
        return [line.msg for line in logs.ring(machine).tail(limit)]

    return tail


def _application(middlewares: list[Middleware]) -> web.Application:
    app = web.Application(
        middlewares=middlewares,
        client_max_size=MAX_BODY,
        handler_args={"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64},
    )
    app.on_response_prepare.append(_on_prepare)
    return app
