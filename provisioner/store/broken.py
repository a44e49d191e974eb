"""`BrokenStore`: a `Store` whose every operation raises, to cover error paths.

As matchbox's `testfakes.BrokenStore`: the database is down, but the secret key (held
outside the database) still works.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from provisioner.store.base import Store
from provisioner.store.crypto import SecretBox

__all__ = ["BrokenStore", "StoreUnavailableError"]


class StoreUnavailableError(ConnectionError):
    """What `BrokenStore` raises: the database is down."""


class BrokenStore:
    """A `Store` whose every operation raises `StoreUnavailableError` (error paths)."""

    def __init__(self, box: SecretBox | None = None) -> None:
        self._box = box or SecretBox(secrets.token_bytes(32))

    @property
    def box(self) -> SecretBox:
        """The key still works: only the database is down."""
        return self._box

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def broken(*_args: object, **_kwargs: object) -> Any:  # noqa: ANN401
            msg = f"store unavailable ({name})"
            raise StoreUnavailableError(msg)

        if name.startswith("__"):
            raise AttributeError(name)
        return broken


def _conforms(broken: BrokenStore) -> Store:
    """Mypy checks here that the fake is a `Store` (its operations come from __getattr__)."""
    return broken
