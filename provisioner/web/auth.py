"""Bearer-token authentication for /api/v1 (everything else is for machines, unauthenticated).

The token is generated at first start into `state_dir/api-token` (mode 0600) and compared
in constant time. The caller of every request is recorded as `request["actor"]`, which
audit events carry (`api:admin` for the state-dir token).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from provisioner.web.context import ACTOR

__all__ = ["API_PREFIX", "PUBLIC_API_PATHS", "auth_middleware", "load_or_create_api_token", "token_path"]

API_PREFIX = "/api/v1/"
PUBLIC_API_PATHS = frozenset({"/api/v1/openapi.json"})
TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret
ADMIN_ACTOR = "api:admin"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_path(state_dir: Path) -> Path:
    """Where the API token lives."""
    return state_dir / TOKEN_FILE


def load_or_create_api_token(state_dir: Path) -> str:
    """Read the API token, creating it (256 random bits, file mode 0600) if it is missing."""
    path = token_path(state_dir)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    if text:
        return text
    state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: if another process created it meanwhile, read theirs instead.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token


def _unauthorized(reason: str) -> web.Response:
    return web.json_response(
        {"error": "unauthorized", "detail": reason},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="provisioner"'},
    )


def auth_middleware(token: str) -> Middleware:
    """A middleware requiring `Authorization: Bearer <token>` on /api/v1 (except public paths)."""
    expected = token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else path
        # Decide on the matched route as well as the raw path, so no spelling of a path
        # that routes to an API handler can skip the check.
        if (not path.startswith(API_PREFIX) and not canonical.startswith(API_PREFIX)) or (
            canonical in PUBLIC_API_PATHS and path in PUBLIC_API_PATHS
        ):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return _unauthorized("bearer token required")
        # aiohttp hands undecodable header bytes over as surrogates (surrogateescape):
        # encode them back instead of raising, so garbage is a 401, never a 500.
        if not hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"), expected):
            return _unauthorized("invalid token")
        request[ACTOR] = ADMIN_ACTOR
        return await handler(request)

    return middleware
