"""Reconcile the database to inventory files: diff, then apply in one transaction.

Theory of operation
-------------------
1. Read the current clusters and machines (with NICs and BMCs) inside the transaction.
2. Compute the plan: added, changed (field-level before/after) and, with prune, removed.
   Machines that stay in the database but are not in the files are checked for clashes
   (a MAC, UUID or IP the files give to another machine): that is an error naming the
   file:line, and nothing is written.
3. Write in two phases so unique values can move between machines in one apply (a NIC
   swapped between two servers): first release the unique values that change, flush, then
   set the new ones.
4. One event per change (actor given by the caller) in the same transaction.
A dry run computes the plan and rolls back. Lifecycle state is never touched by apply.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from provisioner.events import Event, utcnow
from provisioner.inventory.desired import (
    CLUSTER_COLUMNS,
    MACHINE_COLUMNS,
    DesiredBmc,
    PasswordError,
    bmc_fields,
    cluster_fields,
    machine_fields,
)
from provisioner.inventory.validate import Inventory
from provisioner.store.crypto import SecretError
from provisioner.store.repository import Store, bmc_context, event_row
from provisioner.store.tables import BmcRow, ClusterRow, MachineRow, NicRow

__all__ = ["Change", "InventoryConflictError", "Plan", "apply_inventory"]

_HIDDEN = "(hidden)"


class _DryRunError(Exception):
    """Raised inside the transaction to roll a dry run back."""


class InventoryConflictError(Exception):
    """The files cannot be applied to this database; `problems` are file:line messages."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Change:
    """One entity's change: action is added | changed | removed."""

    action: str
    kind: str
    name: str
    fields: tuple[tuple[str, Any, Any], ...] = ()


@dataclass
class Plan:
    """What an apply did (or would do, for a dry run)."""

    changes: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when the database already matches the files."""
        return not self.changes

    def counts(self) -> dict[str, int]:
        """How many of each action."""
        out = {"added": 0, "changed": 0, "removed": 0}
        for change in self.changes:
            out[change.action] += 1
        return out


def _diff(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key == "spec":
            fields.extend((f"{key}.{k}", o, n) for k, o, n in _diff(old, new))
        elif old != new:
            fields.append((key, old, new))
    return fields


def _row_fields(row: MachineRow, macs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {c: getattr(row, c) for c in MACHINE_COLUMNS}
    out["labels"] = dict(row.labels)
    out["spec"] = dict(row.spec)
    out["macs"] = macs
    return out


def _bmc_changes(
    store: Store, name: str, row: BmcRow | None, want: DesiredBmc | None
) -> list[tuple[str, Any, Any]]:
    have = (
        None
        if row is None
        else {
            "driver": row.driver,
            "address": row.address,
            "port": row.port,
            "username": row.username,
            "password_ref": row.password_ref,
            "options": dict(row.options),
        }
    )
    if have is None or want is None:
        wanted = None if want is None else want.visible()
        return [] if have == wanted else [("bmc", have, wanted)]
    changes = [(f"bmc.{k}", o, n) for k, o, n in _diff(have, want.visible())]
    current: str | None = None
    if row is not None and row.password_enc is not None:
        try:
            current = store.box.open_text(row.password_enc, bmc_context(name))
        except SecretError:
            current = None  # unreadable (key changed): treat as different, rewrite it
    if current != want.password:
        changes.append(("bmc.password", _HIDDEN, _HIDDEN))
    return changes


async def _load(
    session: AsyncSession,
) -> tuple[dict[str, ClusterRow], dict[str, MachineRow], dict[int, list[NicRow]], dict[int, BmcRow]]:
    clusters = {r.name: r for r in (await session.execute(select(ClusterRow))).scalars()}
    machines = {r.name: r for r in (await session.execute(select(MachineRow))).scalars()}
    nics: dict[int, list[NicRow]] = {}
    for nic in (await session.execute(select(NicRow).order_by(col(NicRow.position)))).scalars():
        nics.setdefault(nic.machine_id, []).append(nic)
    bmcs = {b.machine_id: b for b in (await session.execute(select(BmcRow))).scalars()}
    return clusters, machines, nics, bmcs


def _clashes(inv: Inventory, machines: dict[str, MachineRow], nics: dict[int, list[NicRow]]) -> list[str]:
    """Unique values the files use that a kept, unlisted database machine still holds."""
    problems = []
    for row in machines.values():
        if row.name in inv.machines:
            continue
        held = {("MAC", n.mac) for n in nics.get(row.id or 0, [])}
        if row.uuid:
            held.add(("UUID", row.uuid))
        if row.ip:
            held.add(("IP", row.ip))
        for loc in inv.machines.values():
            spec = loc.spec
            wants = {("MAC", m) for m in spec.macs}
            if spec.uuid:
                wants.add(("UUID", spec.uuid))
            if spec.ip:
                wants.add(("IP", str(spec.ip)))
            for what, value in sorted(held & wants):
                problems.append(
                    f"{loc.where}: {what} {value} of {spec.name} belongs to machine {row.name} in the "
                    "database, which these files do not list (remove it there, or apply with --prune)"
                )
    return problems


async def apply_inventory(
    store: Store, inv: Inventory, *, prune: bool = False, dry_run: bool = False, actor: str = "cli"
) -> Plan:
    """Make the database match `inv`; return the plan. Raises InventoryConflictError."""
    if not inv.ok:
        raise InventoryConflictError(inv.problems)
    problems: list[str] = []
    bmcs_wanted: dict[str, DesiredBmc | None] = {}
    for name, loc in inv.machines.items():
        try:
            bmcs_wanted[name] = bmc_fields(loc.spec.bmc, name, store.box)
        except PasswordError as exc:
            problems.append(f"{loc.where}: machine {name}: {exc}")
    if problems:
        raise InventoryConflictError(problems)
    plan = Plan()
    with contextlib.suppress(_DryRunError):
        await _write(store, inv, plan, bmcs_wanted, prune=prune, dry_run=dry_run, actor=actor)
    return plan


async def _write(
    store: Store,
    inv: Inventory,
    plan: Plan,
    bmcs_wanted: dict[str, DesiredBmc | None],
    *,
    prune: bool,
    dry_run: bool,
    actor: str,
) -> None:
    now = utcnow()
    async with store.session() as session:
        clusters, machines, nics, bmcs = await _load(session)
        if not prune and (clash := _clashes(inv, machines, nics)):
            raise InventoryConflictError(clash)
        _apply_clusters(session, inv, clusters, plan, now)
        pending = await _release_machines(
            session, inv, machines, nics, bmcs, bmcs_wanted, plan, store, prune=prune
        )
        await session.flush()
        for name, row, want, new_nics in pending:
            await _write_machine(
                session, store, name, row, want, new_nics, bmcs, bmcs_wanted[name], plan, now
            )
        if prune:
            for name, crow in clusters.items():
                if name not in inv.clusters:
                    await session.delete(crow)
                    plan.changes.append(Change("removed", "Cluster", name))
        for change in plan.changes:
            session.add(
                event_row(
                    Event(
                        kind=f"inventory.{change.action}",
                        at=now,
                        machine=change.name if change.kind == "Machine" else None,
                        actor=actor,
                        data={
                            "kind": change.kind,
                            "name": change.name,
                            "fields": [f[0] for f in change.fields],
                        },
                    )
                )
            )
        await session.flush()
        if dry_run:
            raise _DryRunError


def _apply_clusters(
    session: AsyncSession, inv: Inventory, clusters: dict[str, ClusterRow], plan: Plan, now: datetime
) -> None:
    for name, cloc in inv.clusters.items():
        want = cluster_fields(cloc.spec)
        row = clusters.get(name)
        if row is None:
            session.add(ClusterRow(name=name, created_at=now, updated_at=now, **want))
            plan.changes.append(Change("added", "Cluster", name))
            continue
        have = {c: getattr(row, c) for c in CLUSTER_COLUMNS} | {"spec": dict(row.spec)}
        if diff := _diff(have, want):
            for key, value in want.items():
                setattr(row, key, value)
            row.updated_at = now
            plan.changes.append(Change("changed", "Cluster", name, tuple(diff)))


_Pending = tuple[str, MachineRow, dict[str, Any], bool]


async def _release_machines(  # noqa: PLR0913 - the phase's inputs
    session: AsyncSession,
    inv: Inventory,
    machines: dict[str, MachineRow],
    nics: dict[int, list[NicRow]],
    bmcs: dict[int, BmcRow],
    bmcs_wanted: dict[str, DesiredBmc | None],
    plan: Plan,
    store: Store,
    *,
    prune: bool,
) -> list[_Pending]:
    """Phase 1: removals, and releasing unique values that move. Returns what to write."""
    now = utcnow()
    if prune:
        for name, old in machines.items():
            if name not in inv.machines:
                await session.execute(delete(NicRow).where(col(NicRow.machine_id) == old.id))
                await session.execute(delete(BmcRow).where(col(BmcRow.machine_id) == old.id))
                await session.delete(old)
                plan.changes.append(Change("removed", "Machine", name))
    pending: list[_Pending] = []
    for name, loc in inv.machines.items():
        want = machine_fields(loc.spec)
        existing = machines.get(name)
        if existing is None:
            pending.append(
                (name, MachineRow(name=name, state_since=now, created_at=now, updated_at=now), want, True)
            )
            continue
        current_macs = [n.mac for n in nics.get(existing.id or 0, [])]
        diff = _diff(_row_fields(existing, current_macs), want)
        diff += _bmc_changes(store, name, bmcs.get(existing.id or 0), bmcs_wanted[name])
        if not diff:
            continue
        plan.changes.append(Change("changed", "Machine", name, tuple(diff)))
        if existing.uuid != want["uuid"]:
            existing.uuid = None
        if existing.ip != want["ip"]:
            existing.ip = None
        macs_changed = current_macs != want["macs"]
        if macs_changed:
            await session.execute(delete(NicRow).where(col(NicRow.machine_id) == existing.id))
        pending.append((name, existing, want, macs_changed))
    return pending


async def _write_machine(  # noqa: PLR0913, PLR0917 - phase 2 for one machine
    session: AsyncSession,
    store: Store,
    name: str,
    row: MachineRow,
    want: dict[str, Any],
    new_nics: bool,
    bmcs: dict[int, BmcRow],
    desired_bmc: DesiredBmc | None,
    plan: Plan,
    now: datetime,
) -> None:
    """Phase 2: write the new values of one machine, its NICs and its BMC."""
    is_new = row.id is None
    for key, value in want.items():
        if key != "macs":
            setattr(row, key, value)
    row.updated_at = now
    session.add(row)
    await session.flush()
    machine_id = row.id or 0
    if new_nics:
        session.add_all(NicRow(machine_id=machine_id, mac=m, position=i) for i, m in enumerate(want["macs"]))
    existing = None if is_new else bmcs.get(machine_id)
    if desired_bmc is None and existing is not None:
        await session.delete(existing)
    elif desired_bmc is not None:
        target = existing or BmcRow(machine_id=machine_id, driver=desired_bmc.driver)
        for key, value in desired_bmc.visible().items():
            setattr(target, key, value)
        target.password_enc = (
            None if desired_bmc.password is None else store.box.seal(desired_bmc.password, bmc_context(name))
        )
        session.add(target)
    if is_new:
        plan.changes.append(Change("added", "Machine", name))
