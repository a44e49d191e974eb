"""GET /tftp/{name}: the TFTP server's files over HTTP, for UEFI HTTP boot.

UEFI HTTP-boot firmware (vendor class `HTTPClient`) fetches its first stage by URL; the
DHCP answer points it at `/tftp/snponly.efi` (x86-64) or `/tftp/ipxe-arm64.efi`. The
files come from the same allow-listed, read-only source as TFTP (provisioner.tftp.files),
with the same refusals: no traversal, no absolute paths, no symlinks out, nothing else.
"""

from __future__ import annotations

from aiohttp import web

from provisioner.tftp.files import FileRefused, FileSource

__all__ = ["routes"]

FIRMWARE_KEY = web.AppKey("provisioner_firmware_files", FileSource)


async def first_stage(request: web.Request) -> web.StreamResponse:
    """Serve one allow-listed first-stage binary (404 with a short reason otherwise)."""
    files = request.app[FIRMWARE_KEY]
    client = request.remote or ""
    opened = files.open(request.match_info["name"], client)
    if isinstance(opened, FileRefused):
        raise web.HTTPNotFound(text=f"not served: {opened.reason}")
    try:
        body = bytes(opened.data[0 : opened.size])
    finally:
        opened.close()
    return web.Response(body=body, content_type="application/efi", headers={"Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    """The route table of this module."""
    return [web.get("/tftp/{name}", first_stage)]
