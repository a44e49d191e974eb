"""GET /healthz: 200 with `{"status": "ok", "db": "ok"}`, or 503 if the database is down."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from provisioner.web.context import ctx

__all__ = ["healthz", "routes"]

log = logging.getLogger(__name__)

DB_CHECK_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Check the database with a trivial query under a short timeout."""
    c = ctx(request)
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
            await c.rt.store.ping()
    except Exception as exc:
        log.warning("health check: database unreachable: %s", type(exc).__name__)
        return web.json_response({"status": "error", "db": "unreachable"}, status=503)
    return web.json_response(
        {"status": "ok", "db": "ok", "instance": c.rt.instance, "machines": len(c.rt.machines())}
    )


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    return [web.get("/healthz", healthz)]
