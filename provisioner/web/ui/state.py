"""The console's shared state: its dependencies (`UiDeps`), `UiState` and the app/request keys.

Apart from app.py (which builds the sub-application from the page modules), so the
page modules can import these at module level without importing app.py back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.store.base import Store
from provisioner.web.ui.feed import ChangeFeed, FeedSource
from provisioner.web.ui.rows import RowCache
from provisioner.web.ui.session import Session, Sessions, TokenCheck
from provisioner.web.ui.users import Identity

__all__ = ["SESSION", "UI", "UI_APP", "PowerPort", "UiDeps", "UiState"]

PowerPort = Callable[[], Any]
"""Returns the running power service (`PowerService` protocol) or None when absent."""


@dataclass(frozen=True)
class UiDeps:
    """What the console needs, passed explicitly by whoever mounts it."""

    store: Store
    """The store (machines, events, clusters, leases, discovered, the feed, config tokens)."""
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
