"""/api/v1/machines/{name}/logs: the node's kernel log (Talos `talos.logging.kernel`/`KmsgLogConfig`).

The lines live in the telemetry part's per-machine ring (`WebRuntime.logs`) (memory, bounded by
`telemetry.log_lines`), so they are this daemon's: another instance has its own.
`/logs` is a snapshot; `/logs/stream` is the same as NDJSON followed by new lines as
they arrive, until the client goes away or `max_s` passes.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from provisioner.web.api.common import checked_name, int_param, json_error, json_ok
from provisioner.web.context import ctx
from provisioner.web.protocols import KernelLogs

__all__ = ["MAX_LINES", "routes"]

MAX_LINES = 1_000_000
MAX_STREAM_S = 86_400
_WAIT_S = 1.0


async def _hub_and_name(request: web.Request) -> tuple[KernelLogs | None, str]:
    c = ctx(request)
    name = checked_name(request)
    if await c.rt.store.get_machine(name) is None:
        raise web.HTTPNotFound(text="no such machine")
    return c.rt.logs, name


def _not_running() -> web.Response:
    # 404, not 503: nothing is unavailable for a while; this daemon receives no kernel logs
    # at all (the operator turned telemetry off), so there is no such resource here.
    return json_error(
        404, "no kernel logs: telemetry is off (telemetry.enabled = false)", reason="telemetry-off"
    )


async def machine_logs(request: web.Request) -> web.Response:
    """GET /api/v1/machines/{name}/logs?limit=: the newest kernel log lines, oldest first."""
    hub, name = await _hub_and_name(request)
    limit = int_param(request, "limit", 500, 1, MAX_LINES) or 500
    if hub is None:
        return _not_running()
    ring = hub.ring(name)
    return json_ok({"items": [line.as_dict() for line in ring.tail(limit)], "total": ring.total})


async def machine_logs_stream(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/machines/{name}/logs/stream?limit=&max_s=: NDJSON, then new lines as they come."""
    hub, name = await _hub_and_name(request)
    limit = int_param(request, "limit", 100, 0, MAX_LINES)
    max_s = int_param(request, "max_s", 3600, 1, MAX_STREAM_S) or 3600
    if hub is None:
        return _not_running()
    ring = hub.ring(name)
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    deadline = time.monotonic() + max_s
    lines, seen = ring.tail(limit), ring.total
    while True:
        if lines:
            await response.write(b"".join(json.dumps(line.as_dict()).encode() + b"\n" for line in lines))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # No await between reading the lines and the total: they agree.
        lines = await hub.wait_lines(name, seen, min(_WAIT_S, remaining))
        seen = ring.total
    await response.write_eof()
    return response


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    base = "/api/v1/machines/{name}/logs"
    return [web.get(base, machine_logs), web.get(base + "/stream", machine_logs_stream)]
