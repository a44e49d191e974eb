"""GET/HEAD /assets/{set}/{kernel|initramfs}: boot files, streamed with sendfile.

`web.FileResponse` answers Range requests (206, 416), HEAD, ETag / If-None-Match (304)
and If-Modified-Since, with an exact Content-Length, and uses `loop.sendfile` so the
bytes never pass through Python (docs/benchmarks.md: within ~10% of nginx on the default loop).
The set name is checked against the allowed pattern and the path resolved inside the
asset directory before any file is opened (docs/threats.md C1).
"""

from __future__ import annotations

from aiohttp import web

from provisioner.store.assets import AssetError
from provisioner.web.context import ctx

__all__ = ["routes", "serve_asset"]

CHUNK_SIZE = 1 << 20  # used only where sendfile is unavailable (e.g. TLS)


async def serve_asset(request: web.Request) -> web.StreamResponse:
    """Serve one asset file."""
    c = ctx(request)
    try:
        path = c.assets.file(request.match_info["name"], request.match_info["file"])
    except AssetError:
        raise web.HTTPNotFound(text="no such asset\n") from None
    if not path.is_file():
        raise web.HTTPNotFound(text="no such asset\n")
    return web.FileResponse(path, chunk_size=CHUNK_SIZE, headers={"Content-Type": "application/octet-stream"})


def routes() -> list[web.RouteDef]:
    """This module's routes (GET also answers HEAD)."""
    return [web.get("/assets/{name}/{file}", serve_asset)]
