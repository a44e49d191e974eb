"""GET /ui/stream: Server-Sent Events from the console feed.

`?machine=NAME` limits `event` messages to one machine (the machine page); the rack
page takes `machine` messages (one row each). Comment lines keep idle proxies from
closing the stream; `retry` makes the browser reconnect within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from provisioner.web.ui.app import UI

__all__ = ["routes"]

KEEPALIVE_S = 15.0


async def stream(request: web.Request) -> web.StreamResponse:
    """The SSE stream of machine rows and events."""
    feed = request.app[UI].feed
    only = request.query.get("machine")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    queue = feed.subscribe()
    try:
        await response.write(b"retry: 1000\n\n")
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if message is None:
                break
            if only is not None and message.machine != only:
                continue
            payload = json.dumps(message.data, separators=(",", ":"))
            await response.write(f"event: {message.kind}\ndata: {payload}\n\n".encode())
            if message.kind == "resync":
                break
    except ConnectionResetError:
        return response
    finally:
        feed.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def routes() -> list[web.RouteDef]:
    """The stream route (relative to /ui)."""
    return [web.get("/stream", stream)]
