"""Console sessions: token login, an HttpOnly SameSite=Strict cookie, CSRF tokens, expiry.

Sessions live in memory (a restart logs everyone out, which is the safe direction). The
cookie carries only a random session id; each session has its own CSRF token that every
state-changing form and request must echo (`csrf` field or `X-CSRF-Token` header),
compared in constant time. The login form itself is protected by a double-submit token
(a short-lived `pv_login` cookie equal to the form's field) so no other site can log a
browser in under its own token.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from provisioner.web.ui.users import Identity

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "Session",
    "Sessions",
    "TokenCheck",
    "admin_token_check",
]

COOKIE = "pv_session"
LOGIN_COOKIE = "pv_login"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_TTL_S = 8 * 3600.0  # one working shift
MAX_SESSIONS = 10_000

TokenCheck = Callable[[str], Awaitable[Identity | None]]
"""Presented token → who it is (actor, admin), or None when it is not valid."""


def admin_token_check(api_token: str) -> TokenCheck:
    """Accept only the daemon's API token (state_dir/api-token), as the `api:admin` actor."""
    expected = api_token.encode()

    async def check(presented: str) -> Identity | None:
        ok = hmac.compare_digest(presented.strip().encode(), expected)
        return Identity("api:admin", admin=True) if ok else None

    return check


@dataclass
class Session:
    """One logged-in browser."""

    sid: str
    identity: Identity
    csrf: str
    expires: float
    flash: str = ""
    flash_ok: bool = True

    @property
    def actor(self) -> str:
        """Who acts (audit events carry it)."""
        return self.identity.actor

    @property
    def admin(self) -> bool:
        """Whether this user may download talosconfigs."""
        return self.identity.admin


class Sessions:
    """The session table (time comes from `clock`, monotonic by default)."""

    def __init__(self, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._by_id: dict[str, Session] = {}

    def create(self, identity: Identity) -> Session:
        """A new session for `identity` (the oldest is dropped when the table is full)."""
        self._expire()
        if len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]
        session = Session(
            sid=secrets.token_urlsafe(32),
            identity=identity,
            csrf=secrets.token_urlsafe(32),
            expires=self._clock() + self.ttl_s,
        )
        self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, or None (expired ones are removed)."""
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._by_id[sid]
            return None
        return session

    def drop(self, sid: str) -> None:
        """Log a session out."""
        self._by_id.pop(sid, None)

    def _expire(self) -> None:
        now = self._clock()
        for sid in [s for s, v in self._by_id.items() if v.expires <= now]:
            del self._by_id[sid]


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether the presented CSRF token is this session's."""
    return bool(presented) and hmac.compare_digest(str(presented).encode(), session.csrf.encode())


def set_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int
) -> None:
    """An HttpOnly, SameSite=Strict cookie scoped to /ui/, Secure when the request came over TLS."""
    response.set_cookie(
        name, value, max_age=max_age, path="/ui/", httponly=True, secure=request.secure, samesite="Strict"
    )
