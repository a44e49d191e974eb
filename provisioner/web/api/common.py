"""Helpers shared by the API handlers: JSON shaping, parameters, audit events."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from provisioner.events import Event, Severity, utcnow
from provisioner.web.context import ACTOR

__all__ = [
    "MAX_ID",
    "NAME_RE",
    "actor",
    "audit",
    "int_param",
    "json_error",
    "json_ok",
    "plain",
    "read_json_object",
]

MAX_ID = 2**31 - 1
"""Ids are 32-bit integer columns (PostgreSQL `integer`): larger values are a 400, not a 500."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def plain(value: object) -> Any:  # noqa: ANN401 - JSON-shaped output
    """A JSON-able copy of a record: dataclasses to dicts, datetimes to ISO 8601 UTC."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def json_ok(data: object, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.json_response(plain(data), status=status, dumps=lambda o: json.dumps(o, separators=(",", ":")))


def json_error(status: int, detail: str, *, reason: str, **extra: object) -> web.Response:
    """An API error answer with a machine-readable `reason` (plus `extra` fields).

    Same shape as the error middleware's `{"error", "detail"}` (OpenAPI `Error`), so
    clients read every error the same way; `reason` lets scripts branch without parsing
    `detail`.
    """
    body = {"error": web.Response(status=status).reason, "detail": detail, "reason": reason, **extra}
    return json_ok(body, status=status)


def actor(request: web.Request) -> str:
    """Who is calling (set by the auth middleware)."""
    return str(request.get(ACTOR, "api:unknown"))


def checked_name(request: web.Request, key: str = "name") -> str:
    """A path name that can exist, else 404 (no database round trip for garbage)."""
    name = request.match_info[key]
    if not NAME_RE.fullmatch(name):
        raise web.HTTPNotFound(text=f"no such {key}")
    return name


def int_param(request: web.Request, key: str, default: int | None, lo: int, hi: int) -> int | None:
    """An integer query parameter within [lo, hi], or 400."""
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{key} must be an integer") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"{key} must be between {lo} and {hi}")
    return value


async def read_json_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """The request body as a JSON object with only `allowed` keys (an empty body is {})."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="body is not valid JSON") from None
    except RecursionError:
        # json.loads recurses per nesting level: 64 KiB of "[" exhausts the stack.
        raise web.HTTPBadRequest(text="body is nested too deeply") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown fields: {', '.join(unknown)}")
    return data


def audit(
    request: web.Request,
    what: str,
    *,
    machine: str | None = None,
    data: Mapping[str, object] | None = None,
    severity: Severity = Severity.INFO,
) -> Event:
    """An `api.change` event naming the caller and the source address (emit or attach it)."""
    return Event(
        kind="api.change",
        at=utcnow(),
        machine=machine,
        severity=severity,
        actor=actor(request),
        message=what,
        data={"action": what, "source": request.remote, **(data or {})},
    )
