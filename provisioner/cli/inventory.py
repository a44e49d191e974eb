"""`provisioner inventory`: validate, apply and export inventory files."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from provisioner.cli.common import CliState, console, emit_json, pass_state, run, safe
from provisioner.secretfile import write_private

__all__ = ["inventory"]


@click.group()
def inventory() -> None:
    """Inventory files (YAML documents or CSV machine lists) to and from the database."""


def _load(state: CliState, paths: tuple[str, ...]) -> Any:  # noqa: ANN401 - Inventory
    from provisioner.inventory import load_inventory

    return load_inventory([Path(p) for p in paths], subnets=state.settings.dhcp.subnet)


def _print_problems(problems: list[str]) -> None:
    for problem in problems:
        click.echo(safe(problem, markup=False), err=True)
    click.echo(f"{len(problems)} problem(s) found", err=True)


@inventory.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@pass_state
def validate(state: CliState, paths: tuple[str, ...]) -> None:
    """Check inventory files; print every problem as file:line: message (exit 1)."""
    inv = _load(state, paths)
    for warning in inv.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not inv.ok:
        _print_problems(inv.problems)
        sys.exit(1)
    console.print(f"ok: {len(inv.clusters)} cluster(s), {len(inv.machines)} machine(s)")


def _show(value: object) -> str:
    if value is None:
        return "-"
    return str(value)


def _print_plan(plan: Any, dry_run: bool) -> None:  # noqa: ANN401 - Plan
    if plan.empty:
        console.print("no changes")
        return
    marks = {"added": "[green]+[/green]", "changed": "[yellow]~[/yellow]", "removed": "[red]-[/red]"}
    for change in plan.changes:
        console.print(f"{marks[change.action]} {safe(change.kind)} {safe(change.name)}", markup=True)
        for name, before, after in change.fields:
            line = f"    {name}: {_show(before)} -> {_show(after)}"
            console.print(safe(line, markup=False), markup=False)
    counts = plan.counts()
    verb = "would apply" if dry_run else "applied"
    console.print(
        f"{verb}: {counts['added']} added, {counts['changed']} changed, {counts['removed']} removed"
    )


@inventory.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--prune", is_flag=True, help="Remove machines and clusters that the files do not list.")
@click.option("--dry-run", is_flag=True, help="Show the changes and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@pass_state
def apply(state: CliState, paths: tuple[str, ...], prune: bool, dry_run: bool, as_json: bool) -> None:
    """Make the database match the files, in one transaction, and print the diff."""
    from provisioner.inventory import InventoryConflictError, apply_inventory

    inv = _load(state, paths)
    for warning in inv.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not inv.ok:
        _print_problems(inv.problems)
        click.echo("nothing was changed", err=True)
        sys.exit(1)
    try:
        plan = run(state.with_store(lambda st: apply_inventory(st, inv, prune=prune, dry_run=dry_run)))
    except InventoryConflictError as exc:
        _print_problems(exc.problems)
        click.echo("nothing was changed", err=True)
        sys.exit(1)
    if as_json:
        emit_json(
            [
                {
                    "action": c.action,
                    "kind": c.kind,
                    "name": c.name,
                    "fields": [{"field": f, "before": b, "after": a} for f, b, a in c.fields],
                }
                for c in plan.changes
            ]
        )
        return
    _print_plan(plan, dry_run)


@inventory.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@pass_state
def export(state: CliState, output: str | None) -> None:
    """Write the database as inventory YAML (applies back with no changes)."""
    from provisioner.inventory import export_inventory

    text = run(state.with_store(export_inventory))
    if output:
        # May name BMC users and addresses: written like every other secrets file.
        write_private(Path(output), text)
    else:
        click.echo(text, nl=False)


@inventory.command("discovered")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def discovered(state: CliState, as_json: bool) -> None:
    """List machines that asked to boot but are not in the inventory."""
    from rich.table import Table

    rows = run(state.with_store(lambda st: st.list_discovered()))
    if as_json:
        emit_json([dataclasses.asdict(r) for r in rows])
        return
    table = Table("MAC", "UUID", "ARCH", "SOURCE", "SEEN", "LAST SEEN")
    for r in rows:
        table.add_row(
            safe(r.mac),
            safe(r.uuid or "-"),
            safe(r.arch or "-"),
            safe(r.source),
            str(r.seen_count),
            r.last_seen.isoformat(timespec="seconds"),
        )
    console.print(table)
