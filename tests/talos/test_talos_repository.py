"""Secrets repositories: memory, file, and the adapter over the database store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioner.talos.repository import (
    MemorySecretsRepository,
    SecretsRepository,
    StoreSecretsRepository,
    UnknownClusterError,
    check_cluster_name,
)
from provisioner.talos.secrets import SecretsBundle


@dataclass
class FakeStore:
    """Behaves like provisioner.store's two secrets methods (known clusters only)."""

    clusters: set[str]
    blobs: dict[str, bytes] = field(default_factory=dict)

    async def get_cluster_secrets(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    async def put_cluster_secrets(self, name: str, bundle: bytes, *, actor: str = "cli") -> bool:
        if name not in self.clusters:
            return False
        self.blobs[name] = bundle
        return True


def _repositories(tmp_path: Path) -> list[SecretsRepository]:
    return [
        MemorySecretsRepository(),
        StoreSecretsRepository(FakeStore({"lab"})),
    ]


async def test_round_trip_in_every_repository(tmp_path: Path, fresh_bundle: SecretsBundle) -> None:
    for repository in _repositories(tmp_path):
        assert await repository.get("lab") is None
        await repository.put("lab", fresh_bundle)
        assert await repository.get("lab") == fresh_bundle


async def test_store_adapter_keeps_talosctl_format(fresh_bundle: SecretsBundle) -> None:
    store = FakeStore({"lab"})
    await StoreSecretsRepository(store).put("lab", fresh_bundle)
    assert store.blobs["lab"].startswith(b"cluster:\n    id: ")


async def test_store_adapter_refuses_unknown_cluster(fresh_bundle: SecretsBundle) -> None:
    with pytest.raises(UnknownClusterError, match="apply the inventory"):
        await StoreSecretsRepository(FakeStore(set())).put("lab", fresh_bundle)


@pytest.mark.parametrize("name", ["", "Lab", "a_b", "-a", "a" * 64, "../etc"])
def test_bad_cluster_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid cluster name"):
        check_cluster_name(name)


def test_real_store_fits_the_adapter() -> None:
    # mypy checks this call against the ClusterSecretsStore protocol; at run time it only
    # confirms the store class still has both methods.
    from provisioner.store.repository import Store

    def adapt(store: Store) -> StoreSecretsRepository:
        return StoreSecretsRepository(store)

    assert callable(adapt)
    assert callable(Store.get_cluster_secrets)
    assert callable(Store.put_cluster_secrets)
