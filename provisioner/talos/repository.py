"""Where cluster secrets bundles live: a narrow async protocol and its implementations.

* :class:`StoreSecretsRepository` adapts the database layer (anything with the store's
  ``get_cluster_secrets``/``put_cluster_secrets``, which encrypt at rest); the bundle is
  kept in ``talosctl gen secrets`` YAML so an export is a plain file copy;
* :class:`FileSecretsRepository` is the stop-gap the CLI uses until it is wired to the
  store: one ``talosctl gen secrets`` file per cluster under the state directory, 0600;
* :class:`MemorySecretsRepository` serves tests.

This module does not import the store: the dependency points from the store's callers
to ``provisioner.talos``, never back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from provisioner.talos.secrets import SecretsBundle, dump_bundle, load_bundle

__all__ = [
    "ClusterSecretsStore",
    "MemorySecretsRepository",
    "SecretsRepository",
    "StoreSecretsRepository",
    "UnknownClusterError",
    "check_cluster_name",
]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_cluster_name(name: str) -> str:
    """Return ``name`` if it is a DNS-label-like cluster name, else raise ValueError."""
    if not _NAME.match(name):
        msg = f"invalid cluster name {name!r}: use lowercase letters, digits and '-' (max 63)"
        raise ValueError(msg)
    return name


class SecretsRepository(Protocol):
    """Storage of one secrets bundle per cluster name."""

    async def get(self, name: str) -> SecretsBundle | None:
        """Return the cluster's bundle, or None when the cluster has none yet."""
        ...

    async def put(self, name: str, bundle: SecretsBundle) -> None:
        """Store (or replace) the cluster's bundle."""
        ...


class UnknownClusterError(LookupError):
    """The cluster is not in the database (apply the inventory that defines it first)."""


class ClusterSecretsStore(Protocol):
    """The two methods of ``provisioner.store`` that hold encrypted secrets bundles."""

    async def get_cluster_secrets(self, name: str) -> bytes | None:
        """Return the decrypted bundle bytes, or None."""
        ...

    async def put_cluster_secrets(self, name: str, bundle: bytes, *, actor: str = "cli") -> bool:
        """Store the bundle encrypted; False when the cluster does not exist."""
        ...


@dataclass(frozen=True, slots=True)
class StoreSecretsRepository:
    """Secrets in the database, as ``talosctl gen secrets`` YAML encrypted by the store."""

    store: ClusterSecretsStore
    actor: str = "cli"

    async def get(self, name: str) -> SecretsBundle | None:
        """Decrypt and parse the cluster's bundle, if it has one."""
        raw = await self.store.get_cluster_secrets(name)
        return None if raw is None else load_bundle(raw.decode("utf-8"))

    async def put(self, name: str, bundle: SecretsBundle) -> None:
        """Store the bundle; UnknownClusterError when the cluster is not in the database."""
        if not await self.store.put_cluster_secrets(
            name, dump_bundle(bundle).encode("utf-8"), actor=self.actor
        ):
            msg = f"cluster {name!r} is not in the database; apply the inventory that defines it first"
            raise UnknownClusterError(msg)


@dataclass(slots=True)
class MemorySecretsRepository:
    """In-memory repository for tests."""

    bundles: dict[str, SecretsBundle] = field(default_factory=dict)

    async def get(self, name: str) -> SecretsBundle | None:
        """Return the stored bundle, if any."""
        return self.bundles.get(name)

    async def put(self, name: str, bundle: SecretsBundle) -> None:
        """Store the bundle."""
        self.bundles[name] = bundle
