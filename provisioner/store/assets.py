"""Boot asset sets: a named kernel + initramfs (+ default cmdline) under state_dir/assets.

Layout: `<root>/<name>/kernel` and `<root>/<name>/initramfs`, fixed file names, so no
request can name a path: the web layer maps (set name, `kernel`|`initramfs`) to a file
and the set name is checked against `NAME_RE` first (docs/threats.md C1: no traversal).

A set named by a cluster (`ClusterRow.asset_set`) or a machine (`spec.assetSet`) is in
use and cannot be deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlmodel import col

from provisioner.events import Event, utcnow
from provisioner.store.repository import SqlStore, event_row
from provisioner.store.tables import AssetSetRow, ClusterRow, MachineRow
from provisioner.web.ipxe import RESERVED_KEYS

__all__ = [
    "ASSET_FILES",
    "NAME_RE",
    "AssetError",
    "AssetInUseError",
    "AssetRecord",
    "AssetSets",
    "sha256_file",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
ASSET_FILES: tuple[Literal["kernel"], Literal["initramfs"]] = ("kernel", "initramfs")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class AssetError(ValueError):
    """A bad asset name, a checksum mismatch, a missing file."""


class AssetInUseError(AssetError):
    """The set is named by a cluster or machine."""


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """One asset set as stored."""

    name: str
    arch: str
    kernel_sha256: str
    kernel_size: int
    initramfs_sha256: str
    initramfs_size: int
    cmdline: str
    source: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


def _record(row: AssetSetRow) -> AssetRecord:
    return AssetRecord(
        name=row.name,
        arch=row.arch,
        kernel_sha256=row.kernel_sha256,
        kernel_size=row.kernel_size,
        initramfs_sha256=row.initramfs_sha256,
        initramfs_size=row.initramfs_size,
        cmdline=row.cmdline,
        source=dict(row.source),
        created_at=row.created_at,
    )


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 hex digest and size of a file (blocking: call in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_name(name: str) -> str:
    """`name` if it is a valid asset set name, else AssetError."""
    if not NAME_RE.fullmatch(name):
        msg = f"invalid asset set name {name!r}: use [a-z0-9._-], at most 100 characters"
        raise AssetError(msg)
    return name


def _check_sha(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not _SHA_RE.fullmatch(value):
        msg = f"{what}: not a sha256 hex digest: {value!r}"
        raise AssetError(msg)
    return value


class AssetSets:
    """Asset set rows in the `SqlStore` and their files under `root`."""

    def __init__(self, store: SqlStore, root: Path) -> None:
        self._store = store
        self.root = root

    def file(self, name: str, which: str) -> Path:
        """The file of one asset (`which` is kernel or initramfs); AssetError if not allowed."""
        check_name(name)
        if which not in ASSET_FILES:
            msg = f"no such asset file {which!r}"
            raise AssetError(msg)
        path = self.root / name / which
        # Fixed names under a checked set name cannot escape; a symlink planted in the
        # directory could, so resolve and check (docs/threats.md C1: no symlinks out).
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            msg = "asset path leaves the asset directory"
            raise AssetError(msg)
        return resolved

    async def all(self) -> list[AssetRecord]:
        """Every set, by name."""
        async with self._store.session() as session:
            rows = (await session.execute(select(AssetSetRow).order_by(col(AssetSetRow.name)))).scalars()
            return [_record(r) for r in rows]

    async def get(self, name: str) -> AssetRecord | None:
        """One set, or None."""
        async with self._store.session() as session:
            row = (
                await session.execute(select(AssetSetRow).where(col(AssetSetRow.name) == name))
            ).scalar_one_or_none()
            return None if row is None else _record(row)

    async def users(self, name: str) -> list[str]:
        """Who names this set: `cluster:<name>` and `machine:<name>` entries."""
        async with self._store.session() as session:
            clusters = (
                await session.execute(select(col(ClusterRow.name)).where(col(ClusterRow.asset_set) == name))
            ).scalars()
            found = [f"cluster:{c}" for c in clusters]
            machines = (await session.execute(select(col(MachineRow.name), col(MachineRow.spec)))).all()
        found += [f"machine:{m}" for m, spec in machines if (spec or {}).get("assetSet") == name]
        return sorted(found)

    async def add(  # noqa: PLR0913 - one argument per stored attribute
        self,
        name: str,
        kernel: Path,
        initramfs: Path,
        *,
        arch: str = "amd64",
        cmdline: str = "",
        kernel_sha256: str | None = None,
        initramfs_sha256: str | None = None,
        source: dict[str, Any] | None = None,
        replace: bool = False,
        actor: str = "cli",
    ) -> AssetRecord:
        """Copy both files into place, verifying any expected checksums; record the set."""
        check_name(name)
        if "\n" in cmdline or "\r" in cmdline:
            msg = "cmdline must be one line"
            raise AssetError(msg)
        for arg in cmdline.split():
            if arg.split("=", 1)[0] in RESERVED_KEYS:
                # Same rule as inventory kernelArgs: only we say where the config comes from.
                msg = f"cmdline argument {arg!r} is set by the provisioner"
                raise AssetError(msg)
        expected = {
            "kernel": _check_sha(kernel_sha256, "kernel"),
            "initramfs": _check_sha(initramfs_sha256, "initramfs"),
        }
        if await self.get(name) is not None and not replace:
            msg = f"asset set {name!r} exists (use replace)"
            raise AssetError(msg)
        target = self.root / name
        staging = self.root / f".{name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        sums: dict[str, tuple[str, int]] = {}
        try:
            for which, src in (("kernel", kernel), ("initramfs", initramfs)):
                if not src.is_file():
                    msg = f"{which}: no such file: {src}"
                    raise AssetError(msg)
                await asyncio.to_thread(shutil.copyfile, src, staging / which)
                sums[which] = await asyncio.to_thread(sha256_file, staging / which)
                want = expected[which]
                if want is not None and sums[which][0] != want:
                    msg = f"{which}: sha256 mismatch: expected {want}, got {sums[which][0]}"
                    raise AssetError(msg)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        now = utcnow()
        row_values: dict[str, Any] = {
            "arch": arch,
            "kernel": "kernel",
            "kernel_sha256": sums["kernel"][0],
            "kernel_size": sums["kernel"][1],
            "initramfs": "initramfs",
            "initramfs_sha256": sums["initramfs"][0],
            "initramfs_size": sums["initramfs"][1],
            "cmdline": cmdline,
            "source": dict(source or {}),
            "created_at": now,
        }
        event = Event(
            kind="asset.imported", at=now, actor=actor, data={"asset_set": name, **source_summary(source)}
        )
        async with self._store.session() as session:
            await session.execute(delete(AssetSetRow).where(col(AssetSetRow.name) == name))
            session.add(AssetSetRow(name=name, **row_values))
            session.add(event_row(event))
        found = await self.get(name)
        if found is None:  # pragma: no cover - just written in this transaction
            msg = "asset set vanished"
            raise AssetError(msg)
        return found

    async def delete(self, name: str, *, actor: str = "cli") -> None:
        """Remove a set and its files; KeyError if unknown, AssetInUseError if in use."""
        check_name(name)
        users = await self.users(name)
        if users:
            msg = f"asset set {name!r} is in use by {', '.join(users)}"
            raise AssetInUseError(msg)
        event = Event(kind="asset.deleted", at=utcnow(), actor=actor, data={"asset_set": name})
        async with self._store.session() as session:
            result = await session.execute(delete(AssetSetRow).where(col(AssetSetRow.name) == name))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise KeyError(name)
            session.add(event_row(event))
        shutil.rmtree(self.root / name, ignore_errors=True)


def source_summary(source: dict[str, Any] | None) -> dict[str, str]:
    """The printable parts of an asset source (URLs, versions), for events."""
    return {
        k: str(v)
        for k, v in (source or {}).items()
        if k in {"kernel", "initramfs", "talos_version", "schematic"}
    }
