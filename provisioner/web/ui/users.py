"""Per-user console tokens, created with `provisioner ui user add NAME`.

Kept in `state_dir/ui-users` (JSON, mode 0600): for each user only the SHA-256 of the
token (256 random bits, so a fast hash is enough), whether the user is an admin (may
download talosconfigs), and when it was made. The daemon re-reads the file when its
modification time changes, so an added user can log in at once and a removed user's
sessions stop at their next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["USERS_FILE", "Identity", "UserTokens", "add_user", "list_users", "remove_user"]

USERS_FILE = "ui-users"
USER_RE = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
ADMIN_ACTOR = "api:admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who logged in: the actor name audit events carry, and whether they are an admin."""

    actor: str
    admin: bool
    digest: str = ""
    """The token's SHA-256 for per-user tokens ('' for the API token)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _path(state_dir: Path) -> Path:
    return state_dir / USERS_FILE


def _read(state_dir: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_path(state_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        msg = f"{_path(state_dir)}: not a JSON object"
        raise ValueError(msg)  # noqa: TRY004 - a bad file, reported like every bad setting
    return data


def _write(state_dir: Path, users: dict[str, dict[str, object]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = _path(state_dir).with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(users, out, indent=1, sort_keys=True)
    tmp.replace(_path(state_dir))


def add_user(state_dir: Path, name: str, *, admin: bool = False) -> str:
    """Create (or replace) NAME's token; returns the token, which is stored only hashed."""
    if not USER_RE.match(name):
        msg = f"user name {name!r}: lower-case letters, digits, '.', '_' or '-', starting with a letter"
        raise ValueError(msg)
    token = secrets.token_urlsafe(32)
    users = _read(state_dir)
    users[name] = {"sha256": _digest(token), "admin": admin, "created": datetime.now(UTC).isoformat()}
    _write(state_dir, users)
    return token


def remove_user(state_dir: Path, name: str) -> bool:
    """Remove NAME; False if there was no such user."""
    users = _read(state_dir)
    if users.pop(name, None) is None:
        return False
    _write(state_dir, users)
    return True


def list_users(state_dir: Path) -> list[tuple[str, bool, str]]:
    """(name, admin, created) of every user."""
    return [(n, bool(u.get("admin")), str(u.get("created", ""))) for n, u in sorted(_read(state_dir).items())]


class UserTokens:
    """Checks presented tokens: the daemon's API token (admin) or a per-user token."""

    def __init__(self, state_dir: Path, api_token: str) -> None:
        self._state_dir = state_dir
        self._api = api_token.encode()
        self._mtime: int | None = None
        self._by_digest: dict[str, tuple[str, bool]] = {}

    def _users(self) -> dict[str, tuple[str, bool]]:
        try:
            mtime = _path(self._state_dir).stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._by_digest = None, {}
            return self._by_digest
        if mtime != self._mtime:
            self._by_digest = {
                str(u["sha256"]): (n, bool(u.get("admin"))) for n, u in _read(self._state_dir).items()
            }
            self._mtime = mtime
        return self._by_digest

    async def check(self, presented: str) -> Identity | None:
        """The identity a token stands for, or None."""
        token = presented.strip()
        if hmac.compare_digest(token.encode(), self._api):
            return Identity(ADMIN_ACTOR, admin=True)
        digest = _digest(token)
        for known, (name, admin) in self._users().items():
            if hmac.compare_digest(known, digest):
                return Identity(f"ui:{name}", admin=admin, digest=digest)
        return None

    def still_valid(self, identity: Identity) -> bool:
        """Whether a session's per-user token still exists (removed users are logged out)."""
        return not identity.digest or identity.digest in self._users()
