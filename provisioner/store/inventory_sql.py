"""The SQL side of inventory apply and export: a snapshot of the rows, and one write.

The planning (diff, clashes, what changes) is pure and lives in `provisioner.inventory`;
this module only reads and writes rows. Unique values can move between machines in one
apply (a NIC swapped between two servers), so a write runs in two phases: first release
the unique values that change (uuid, ip, NICs) and flush, then set the new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from provisioner.store.base import check_plain_fields
from provisioner.store.records import InventorySnapshot, InventoryWrite, StoredBmc
from provisioner.store.tables import BmcRow, ClusterRow, MachineRow, NicRow, event_row

__all__ = ["CLUSTER_ROW_FIELDS", "MACHINE_ROW_FIELDS", "apply_write", "read_snapshot"]

MACHINE_ROW_FIELDS = (
    "cluster",
    "role",
    "uuid",
    "serial",
    "ip",
    "hostname",
    "install_disk",
    "arch",
    "labels",
    "spec",
)
CLUSTER_ROW_FIELDS = ("talos_version", "kubernetes_version", "endpoint", "asset_set", "spec")
BMC_FIELDS = ("driver", "address", "port", "username", "password_ref", "options")


def _plain(value: Any) -> Any:  # noqa: ANN401 - a column value
    return dict(value) if isinstance(value, dict) else value


async def _rows(
    session: AsyncSession,
) -> tuple[dict[str, ClusterRow], dict[str, MachineRow], dict[int, list[NicRow]], dict[int, BmcRow]]:
    clusters = {
        r.name: r
        for r in (await session.execute(select(ClusterRow).order_by(col(ClusterRow.name)))).scalars()
    }
    machines = {
        r.name: r
        for r in (await session.execute(select(MachineRow).order_by(col(MachineRow.name)))).scalars()
    }
    nics: dict[int, list[NicRow]] = {}
    for nic in (await session.execute(select(NicRow).order_by(col(NicRow.position)))).scalars():
        nics.setdefault(nic.machine_id, []).append(nic)
    bmcs = {b.machine_id: b for b in (await session.execute(select(BmcRow))).scalars()}
    return clusters, machines, nics, bmcs


def _snapshot(
    clusters: dict[str, ClusterRow],
    machines: dict[str, MachineRow],
    nics: dict[int, list[NicRow]],
    bmcs: dict[int, BmcRow],
) -> InventorySnapshot:
    snap = InventorySnapshot()
    for name, crow in clusters.items():
        snap.clusters[name] = {c: _plain(getattr(crow, c)) for c in CLUSTER_ROW_FIELDS}
    for name, row in machines.items():
        fields = {c: _plain(getattr(row, c)) for c in MACHINE_ROW_FIELDS}
        fields["macs"] = [n.mac for n in nics.get(row.id or 0, [])]
        snap.machines[name] = fields
        if (bmc := bmcs.get(row.id or 0)) is not None:
            snap.bmcs[name] = StoredBmc({c: _plain(getattr(bmc, c)) for c in BMC_FIELDS}, bmc.password_enc)
    return snap


async def read_snapshot(session: AsyncSession) -> InventorySnapshot:
    """The inventory rows as plain values."""
    return _snapshot(*await _rows(session))


async def apply_write(
    session: AsyncSession, plan: Callable[[InventorySnapshot], InventoryWrite], now: datetime
) -> InventoryWrite:
    """Read the rows, ask `plan` what to write, write it (the caller owns the transaction)."""
    clusters, machines, nics, bmcs = await _rows(session)
    write = plan(_snapshot(clusters, machines, nics, bmcs))
    for want in write.put_machines.values():
        check_plain_fields(want)  # apply never touches lifecycle state
    for name, want in write.put_clusters.items():
        if (crow := clusters.get(name)) is None:
            session.add(ClusterRow(name=name, created_at=now, updated_at=now, **want))
            continue
        for key, value in want.items():
            setattr(crow, key, value)
        crow.updated_at = now
    for name in write.delete_machines:
        old = machines[name]
        await session.execute(delete(NicRow).where(col(NicRow.machine_id) == old.id))
        await session.execute(delete(BmcRow).where(col(BmcRow.machine_id) == old.id))
        await session.delete(old)
    new_nics = await _release_unique_values(session, write, machines, nics)
    await session.flush()
    for name, want in write.put_machines.items():
        await _put_machine(
            session, name, want, machines.get(name), bmcs, write, now, new_nics=name in new_nics
        )
    for name in write.delete_clusters:
        await session.delete(clusters[name])
    session.add_all(event_row(e) for e in write.events)
    await session.flush()
    return write


async def _release_unique_values(
    session: AsyncSession,
    write: InventoryWrite,
    machines: dict[str, MachineRow],
    nics: dict[int, list[NicRow]],
) -> set[str]:
    """Phase 1: release the uuid, ip and NICs that move; the machines whose NICs are (re)written."""
    new_nics: set[str] = set()
    for name, want in write.put_machines.items():
        if (existing := machines.get(name)) is None:
            new_nics.add(name)
            continue
        if existing.uuid != want.get("uuid"):
            existing.uuid = None
        if existing.ip != want.get("ip"):
            existing.ip = None
        if [n.mac for n in nics.get(existing.id or 0, [])] != want["macs"]:
            await session.execute(delete(NicRow).where(col(NicRow.machine_id) == existing.id))
            new_nics.add(name)
    return new_nics


async def _put_machine(
    session: AsyncSession,
    name: str,
    want: dict[str, Any],
    existing: MachineRow | None,
    bmcs: dict[int, BmcRow],
    write: InventoryWrite,
    now: datetime,
    *,
    new_nics: bool,
) -> None:
    """Phase 2: the new values of one machine, its NICs and its BMC."""
    row = existing or MachineRow(name=name, state_since=now, created_at=now, updated_at=now)
    for key, value in want.items():
        if key != "macs":
            setattr(row, key, value)
    row.updated_at = now
    session.add(row)
    await session.flush()
    machine_id = row.id or 0
    if new_nics:
        session.add_all(NicRow(machine_id=machine_id, mac=m, position=i) for i, m in enumerate(want["macs"]))
    if name not in write.bmcs:
        return
    existing_bmc = None if existing is None else bmcs.get(machine_id)
    stored = write.bmcs[name]
    if stored is None:
        if existing_bmc is not None:
            await session.delete(existing_bmc)
        return
    target = existing_bmc or BmcRow(machine_id=machine_id, driver=stored.fields["driver"])
    for key, value in stored.fields.items():
        setattr(target, key, value)
    target.password_enc = stored.password_enc
    session.add(target)
