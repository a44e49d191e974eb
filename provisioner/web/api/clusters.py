"""/api/v1/clusters: list and show (secrets are never part of an answer)."""

from __future__ import annotations

from aiohttp import web

from provisioner.web.api.common import checked_name, json_ok
from provisioner.web.context import ctx

__all__ = ["routes"]


async def list_clusters(request: web.Request) -> web.Response:
    """GET /api/v1/clusters."""
    return json_ok({"items": await ctx(request).rt.store.list_clusters()})


async def show_cluster(request: web.Request) -> web.Response:
    """GET /api/v1/clusters/{name}."""
    cluster = await ctx(request).rt.store.get_cluster(checked_name(request))
    if cluster is None:
        raise web.HTTPNotFound(text="no such cluster")
    return json_ok(cluster)


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    return [web.get("/api/v1/clusters", list_clusters), web.get("/api/v1/clusters/{name}", show_cluster)]
