"""Reconcile the database to inventory files: diff, then apply in one transaction.

Theory of operation
-------------------
1. The store reads the current clusters and machines (with NICs and BMCs) inside the
   transaction, as plain values (`InventorySnapshot`), and calls the planner here.
2. The planner (pure) computes the plan: added, changed (field-level before/after) and, with prune, removed.
   Machines that stay in the database but are not in the files are checked for clashes
   (a MAC, UUID or IP the files give to another machine): that is an error naming the
   file:line, and nothing is written.
3. The store writes the planner's `InventoryWrite` in two phases so unique values can move
   between machines in one apply (a NIC swapped between two servers): first release the
   unique values that change, flush, then set the new ones.
4. One event per change (actor given by the caller) in the same transaction.
No SQL here: the store (`Store.apply_inventory`) owns the transaction and the rows.
A dry run computes the plan and rolls back. Lifecycle state is never touched by apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from provisioner.events import Event, utcnow
from provisioner.inventory.desired import (
    CLUSTER_COLUMNS,
    DesiredBmc,
    PasswordError,
    bmc_fields,
    cluster_fields,
    machine_fields,
)
from provisioner.inventory.validate import Inventory
from provisioner.store.crypto import SecretBox, SecretError
from provisioner.store.records import InventorySnapshot, InventoryWrite, StoredBmc
from provisioner.store.repository import bmc_context

__all__ = ["Change", "InventoryConflictError", "InventoryStore", "Plan", "apply_inventory"]

_HIDDEN = "(hidden)"


class InventoryStore(Protocol):
    """The store operations an inventory apply needs."""

    @property
    def box(self) -> SecretBox:
        """Seals and opens BMC passwords."""
        ...

    async def apply_inventory(
        self, plan: Callable[[InventorySnapshot], InventoryWrite], *, dry_run: bool
    ) -> InventoryWrite:
        """One transaction: snapshot, `plan`, write (rolled back for a dry run)."""
        ...


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


def _bmc_changes(
    box: SecretBox, name: str, stored: StoredBmc | None, want: DesiredBmc | None
) -> list[tuple[str, Any, Any]]:
    have = None if stored is None else dict(stored.fields)
    if have is None or want is None:
        wanted = None if want is None else want.visible()
        return [] if have == wanted else [("bmc", have, wanted)]
    changes = [(f"bmc.{k}", o, n) for k, o, n in _diff(have, want.visible())]
    current: str | None = None
    if stored is not None and stored.password_enc is not None:
        try:
            current = box.open_text(stored.password_enc, bmc_context(name))
        except SecretError:
            current = None  # unreadable (key changed): treat as different, rewrite it
    if current != want.password:
        changes.append(("bmc.password", _HIDDEN, _HIDDEN))
    return changes


def _clashes(inv: Inventory, snap: InventorySnapshot) -> list[str]:
    """Unique values the files use that a kept, unlisted database machine still holds."""
    problems = []
    for name, have in snap.machines.items():
        if name in inv.machines:
            continue
        held = {("MAC", mac) for mac in have["macs"]}
        if have["uuid"]:
            held.add(("UUID", have["uuid"]))
        if have["ip"]:
            held.add(("IP", have["ip"]))
        for loc in inv.machines.values():
            spec = loc.spec
            wants = {("MAC", m) for m in spec.macs}
            if spec.uuid:
                wants.add(("UUID", spec.uuid))
            if spec.ip:
                wants.add(("IP", str(spec.ip)))
            for what, value in sorted(held & wants):
                problems.append(
                    f"{loc.where}: {what} {value} of {spec.name} belongs to machine {name} in the "
                    "database, which these files do not list (remove it there, or apply with --prune)"
                )
    return problems


async def apply_inventory(
    store: InventoryStore, inv: Inventory, *, prune: bool = False, dry_run: bool = False, actor: str = "cli"
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

    def planner(snap: InventorySnapshot) -> InventoryWrite:
        plan.changes.clear()
        return _plan(snap, inv, plan, bmcs_wanted, store.box, prune=prune, actor=actor, now=utcnow())

    await store.apply_inventory(planner, dry_run=dry_run)
    return plan


def _plan(
    snap: InventorySnapshot,
    inv: Inventory,
    plan: Plan,
    bmcs_wanted: dict[str, DesiredBmc | None],
    box: SecretBox,
    *,
    prune: bool,
    actor: str,
    now: datetime,
) -> InventoryWrite:
    """What to write to make `snap` match `inv` (pure); fills `plan` with the changes."""
    if not prune and (clash := _clashes(inv, snap)):
        raise InventoryConflictError(clash)
    write = InventoryWrite()
    for name, cloc in inv.clusters.items():
        want = cluster_fields(cloc.spec)
        have = snap.clusters.get(name)
        if have is None:
            write.put_clusters[name] = want
            plan.changes.append(Change("added", "Cluster", name))
        elif diff := _diff({c: have[c] for c in (*CLUSTER_COLUMNS, "spec")}, want):
            write.put_clusters[name] = want
            plan.changes.append(Change("changed", "Cluster", name, tuple(diff)))
    if prune:
        for name in snap.machines:
            if name not in inv.machines:
                write.delete_machines.append(name)
                plan.changes.append(Change("removed", "Machine", name))
    added: list[str] = []
    for name, loc in inv.machines.items():
        want = machine_fields(loc.spec)
        have = snap.machines.get(name)
        if have is None:
            added.append(name)
        else:
            diff = _diff({k: have[k] for k in want}, want)
            diff += _bmc_changes(box, name, snap.bmcs.get(name), bmcs_wanted[name])
            if not diff:
                continue
            plan.changes.append(Change("changed", "Machine", name, tuple(diff)))
        write.put_machines[name] = want
        desired_bmc = bmcs_wanted[name]
        write.bmcs[name] = (
            None
            if desired_bmc is None
            else StoredBmc(
                desired_bmc.visible(),
                None if desired_bmc.password is None else box.seal(desired_bmc.password, bmc_context(name)),
            )
        )
    plan.changes.extend(Change("added", "Machine", name) for name in added)
    if prune:
        for name in snap.clusters:
            if name not in inv.clusters:
                write.delete_clusters.append(name)
                plan.changes.append(Change("removed", "Cluster", name))
    write.events = [
        Event(
            kind=f"inventory.{change.action}",
            at=now,
            machine=change.name if change.kind == "Machine" else None,
            actor=actor,
            data={"kind": change.kind, "name": change.name, "fields": [f[0] for f in change.fields]},
        )
        for change in plan.changes
    ]
    return write
