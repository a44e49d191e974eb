"""The console sub-application: dependencies, security headers, the session gate, routes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.templating import TemplateLoader
from provisioner.web.ui.feed import ChangeFeed, FeedSource
from provisioner.web.ui.rows import RowCache
from provisioner.web.ui.session import COOKIE, Session, Sessions, TokenCheck
from provisioner.web.ui.users import Identity

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
PowerPort = Callable[[], Any]
"""Returns the running power service (`PowerService` protocol) or None when absent."""


@dataclass(frozen=True)
class UiDeps:
    """What the console needs, passed explicitly by whoever mounts it."""

    store: Any
    """The store (list/get machines, events, clusters, leases, discovered, sessions)."""
    check_token: TokenCheck
    feed_source: FeedSource
    still_valid: Callable[[Identity], bool] = lambda _: True
    """Whether a logged-in identity still holds (a removed user's sessions end)."""
    power: PowerPort = lambda: None
    assets: Any = None
    """An AssetSets (boot asset sets and their users), or None to hide the page."""
    tokens: Any = None
    """ConfigTokens (revoked on deprovision/reprovision as the API does), or None."""
    events: EventSink | None = None
    """Where audit events of console actions go (the daemon's event sink)."""
    kernel_log: Callable[[str, int], Awaitable[Sequence[str]]] | None = None
    """The newest kernel log lines of a machine, when telemetry is running."""
    templates_dir: Path | None = None
    """`http.templates_dir`: a file there under `ui/` replaces the packaged one (pages and static)."""
    session_ttl_s: float = 8 * 3600.0
    feed_interval_s: float = 0.5  # changes show within a second; an idle poll costs ~4 ms CPU


@dataclass
class UiState:
    """The console's state inside its sub-application."""

    deps: UiDeps
    sessions: Sessions
    feed: ChangeFeed
    jinja: jinja2.Environment
    rows: RowCache = field(default_factory=RowCache)
    extra: dict[str, Any] = field(default_factory=dict)

    def audit(
        self,
        request: web.Request,
        actor: str,
        what: str,
        *,
        machine: str | None = None,
        data: dict[str, object] | None = None,
        severity: Severity = Severity.INFO,
    ) -> None:
        """Record a console action as an `api.change` event, as the REST API does."""
        if self.deps.events is None:
            return
        self.deps.events.emit(
            Event(
                kind="api.change",
                at=utcnow(),
                machine=machine,
                severity=severity,
                actor=actor,
                message=what,
                data={"action": what, "source": request.remote, "via": "ui", **(data or {})},
            )
        )


UI = web.AppKey("provisioner_ui", UiState)
UI_APP = web.AppKey("provisioner_ui_app", web.Application)
"""The mounted console sub-application, on the application that mounts it."""
SESSION = web.RequestKey("provisioner_ui_session", Session)


def environment(templates_dir: Path | None) -> jinja2.Environment:
    """Jinja2 with autoescape on for every template and StrictUndefined (packaged `ui/` templates)."""
    env = jinja2.Environment(
        loader=TemplateLoader(TEMPLATE_SUBDIR, templates_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from provisioner.web.ui.timeline import human, when

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
    from provisioner.web.ui import actions, pages, static, stream

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
