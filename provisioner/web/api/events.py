"""/api/v1/events (filterable, paginated), /api/v1/leases, /api/v1/discovered."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import web

from provisioner.events import Severity
from provisioner.web.api.common import MAX_ID, NAME_RE, int_param, json_ok
from provisioner.web.context import ctx

__all__ = ["routes"]

SEVERITIES = tuple(s.value for s in Severity)
_KIND = re.compile(r"[ -~]{1,64}")
# RFC 3339 §5.6 date-time (what OpenAPI's `format: date-time` means).
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _since(request: web.Request) -> datetime | None:
    raw = request.query.get("since")
    if raw is None:
        return None
    if not _DATE_TIME.fullmatch(raw):
        raise web.HTTPBadRequest(text="since must be an RFC 3339 date-time")
    try:
        # Year 1 at +14:00 or year 9999 at -14:00 overflow when converted to UTC.
        return datetime.fromisoformat(raw.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise web.HTTPBadRequest(text="since must be an RFC 3339 date-time within years 1-9999") from None


async def list_events(request: web.Request) -> web.Response:
    """GET /api/v1/events?machine=&kind=&severity=&since=&before=&limit=, newest first."""
    machine = request.query.get("machine")
    kind = request.query.get("kind")
    severity = request.query.get("severity")
    if machine is not None and not NAME_RE.fullmatch(machine):
        raise web.HTTPBadRequest(text="machine is not a valid name")
    if kind is not None and not _KIND.fullmatch(kind):
        raise web.HTTPBadRequest(text="kind must be 1-64 printable characters")
    if severity is not None and severity not in SEVERITIES:
        raise web.HTTPBadRequest(text=f"severity must be one of {', '.join(SEVERITIES)}")
    limit = int_param(request, "limit", 100, 1, 1000) or 100
    before = int_param(request, "before", None, 1, MAX_ID)
    items = await ctx(request).rt.store.list_events(
        machine=machine, kind=kind, severity=severity, since=_since(request), before_id=before, limit=limit
    )
    return json_ok({"items": items, "next_before": items[-1].id if len(items) == limit else None})


async def list_leases(request: web.Request) -> web.Response:
    """GET /api/v1/leases."""
    items = await ctx(request).rt.store.list_leases()
    for lease in items:
        # SQLite returns naive datetimes; every stored time is UTC.
        expires = lease.get("expires_at")
        if isinstance(expires, str) and _DATE_TIME.fullmatch(expires) is None:
            lease["expires_at"] = datetime.fromisoformat(expires).replace(tzinfo=UTC).isoformat()
    return json_ok({"items": items})


async def list_discovered(request: web.Request) -> web.Response:
    """GET /api/v1/discovered: machines seen on the network but not in the inventory."""
    return json_ok({"items": await ctx(request).rt.store.list_discovered()})


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    return [
        web.get("/api/v1/events", list_events),
        web.get("/api/v1/leases", list_leases),
        web.get("/api/v1/discovered", list_discovered),
    ]
