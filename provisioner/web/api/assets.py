"""/api/v1/assets: list, show, delete (import is `provisioner assets import`: it reads files)."""

from __future__ import annotations

from aiohttp import web

from provisioner.store.assets import NAME_RE, AssetInUseError
from provisioner.web.api.common import actor, json_ok
from provisioner.web.context import ctx

__all__ = ["routes"]


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME_RE.fullmatch(name):
        raise web.HTTPNotFound(text="no such asset set")
    return name


async def list_assets(request: web.Request) -> web.Response:
    """GET /api/v1/assets."""
    return json_ok({"items": await ctx(request).assets.all()})


async def show_asset(request: web.Request) -> web.Response:
    """GET /api/v1/assets/{name}: the set and who uses it."""
    c = ctx(request)
    name = _name(request)
    found = await c.assets.get(name)
    if found is None:
        raise web.HTTPNotFound(text="no such asset set")
    return json_ok({"asset_set": found, "used_by": await c.assets.users(name)})


async def delete_asset(request: web.Request) -> web.Response:
    """DELETE /api/v1/assets/{name}: 409 while a cluster or machine names it."""
    c = ctx(request)
    name = _name(request)
    try:
        await c.assets.delete(name, actor=actor(request))
    except KeyError:
        raise web.HTTPNotFound(text="no such asset set") from None
    except AssetInUseError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    return [
        web.get("/api/v1/assets", list_assets),
        web.get("/api/v1/assets/{name}", show_asset),
        web.delete("/api/v1/assets/{name}", delete_asset),
    ]
