"""The REST API under /api/v1 (JSON, bearer token; see docs/api.md, generated from openapi.py)."""

from __future__ import annotations

from aiohttp import web

from provisioner.web.api import assets, clusters, events, logs, machines, openapi

__all__ = ["routes"]


def routes() -> list[web.RouteDef]:
    """Every API route."""
    return [
        *openapi.routes(),
        *machines.routes(),
        *logs.routes(),
        *clusters.routes(),
        *assets.routes(),
        *events.routes(),
    ]
