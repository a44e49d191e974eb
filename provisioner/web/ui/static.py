"""GET /ui/static/{name}: the console's CSS and JavaScript, from package data.

The files live in `templates/ui/static/` (package data, like the templates:
provisioner/templating.py), or in `http.templates_dir`/`ui/static/` when the operator
overrides one. Only the names listed here are served, so no request can name another file.
"""

from __future__ import annotations

from aiohttp import web

from provisioner.templating import packaged_templates
from provisioner.web.ui.app import UI

__all__ = ["STATIC", "routes"]

STATIC = {"ui.css": "text/css", "ui.js": "text/javascript"}


def _read(request: web.Request, name: str) -> bytes:
    override = request.app[UI].deps.templates_dir
    if override is not None:
        path = override / "ui" / "static" / name
        if path.is_file():
            return path.read_bytes()
    return packaged_templates().joinpath("ui", "static", name).read_bytes()


async def static(request: web.Request) -> web.Response:
    """One static file (cached by the browser for an hour)."""
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound
    return web.Response(
        body=_read(request, name),
        content_type=STATIC[name],
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


def routes() -> list[web.RouteDef]:
    """The static route (relative to /ui)."""
    return [web.get("/static/{name}", static)]
