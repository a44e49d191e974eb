"""The console sub-application: security headers, the session gate, routes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import jinja2
from aiohttp import web

from provisioner.templating import TemplateLoader
from provisioner.web.ui import actions, pages, static, stream
from provisioner.web.ui.feed import ChangeFeed
from provisioner.web.ui.session import COOKIE, Sessions
from provisioner.web.ui.state import SESSION, UI, UI_APP, UiDeps, UiState
from provisioner.web.ui.timeline import human, when

__all__ = [
    "UI",
    "UI_APP",
    "UI_PREFIX",
    "UiDeps",
    "UiState",
    "create_ui_app",
    "mount_ui",
]

UI_PREFIX = "/ui"
TEMPLATE_SUBDIR = "ui"

# No inline script or style anywhere: scripts and styles come from /ui/static only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PUBLIC = frozenset({"/ui/login", "/ui/static/ui.css", "/ui/static/ui.js"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def environment(templates_dir: Path | None) -> jinja2.Environment:
    """Jinja2 with autoescape on for every template and StrictUndefined (packaged `ui/` templates)."""
    env = jinja2.Environment(
        loader=TemplateLoader(TEMPLATE_SUBDIR, templates_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["human"] = human
    env.filters["when"] = when
    return env


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every console answer, errors included; the handler's time.

    `Server-Timing: app;dur=MS, cpu;dur=MS` is the server time of the whole handler
    (session check, data, template), which the 5,000-machine test holds to its budget.
    """
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    if not response.prepared:
        # app: wall time in the handler; cpu: this thread's CPU time in it (what the
        # handler itself cost, apart from waiting for a busy machine's CPU or the database).
        wall_ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.thread_time() - cpu) * 1000
        response.headers["Server-Timing"] = f"app;dur={wall_ms:.1f}, cpu;dur={cpu_ms:.1f}"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No session: pages redirect to the login form, the SSE stream answers 401."""
    if request.path in PUBLIC or request.path.startswith("/ui/static/"):
        return await handler(request)
    state = request.app[UI]
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is not None and not state.deps.still_valid(session.identity):
        state.sessions.drop(session.sid)
        session = None
    if session is None:
        if request.path == "/ui/stream" or request.method != "GET":
            raise web.HTTPUnauthorized(text="log in first")
        raise web.HTTPSeeOther("/ui/login")
    request[SESSION] = session
    return await handler(request)


def create_ui_app(deps: UiDeps) -> web.Application:
    """The console as an aiohttp application to mount at /ui."""
    app = web.Application(middlewares=[headers_middleware, session_middleware])
    feed = ChangeFeed(deps.feed_source, interval=deps.feed_interval_s)
    app[UI] = UiState(
        deps=deps,
        sessions=Sessions(ttl_s=deps.session_ttl_s),
        feed=feed,
        jinja=environment(deps.templates_dir),
    )

    def warm() -> None:
        # Build every rack row once now, so the first rack view is as fast as the rest.
        state = app[UI]
        for m in feed.machines.values():
            state.rows.html(m, feed.power.get(m.name, "unknown"), 0.0, feed.row)

    feed.on_loaded = warm

    async def start(_: web.Application) -> None:
        await feed.start()

    async def stop(_: web.Application) -> None:
        await feed.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.add_routes(pages.routes())
    app.add_routes(actions.routes())
    app.add_routes(stream.routes())
    app.add_routes(static.routes())
    return app


def mount_ui(app: web.Application, deps: UiDeps) -> web.Application:
    """Mount the console on `app` under /ui/ (and redirect /ui to /ui/)."""
    sub = create_ui_app(deps)
    app.add_subapp(UI_PREFIX, sub)
    app[UI_APP] = sub
    return sub
