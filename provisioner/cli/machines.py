"""`provisioner machines`: list, show, events read the database; release and logs use the API."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from provisioner.cli.common import CliState, console, die, emit_json, pass_state, run, safe
from provisioner.cli.logs import logs
from provisioner.lifecycle import CONFIG_DELIVERY_STATES

__all__ = ["machine_table", "machines"]


@click.group()
def machines() -> None:
    """Machines in the inventory and their lifecycle state."""


machines.add_command(logs)


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    seconds = int((now - since).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def machine_table(records: list[Any], last_events: dict[str, str] | None = None) -> Table:
    """The machines table used by `machines list` and the live provisioning view."""
    now = datetime.now(UTC)
    table = Table("NAME", "CLUSTER", "ROLE", "STATE", "FOR", "IP", "MACS", "BMC", "LAST EVENT")
    for m in records:
        style = {"Provisioned": "green", "Failed": "red", "Discovered": "dim"}.get(m.state, "")
        state = safe(m.state)
        table.add_row(
            safe(m.name),
            safe(m.cluster or "-"),
            safe(m.role),
            f"[{style}]{state}[/{style}]" if style else state,
            _age(m.state_since, now),
            safe(m.ip or "-"),
            safe(",".join(m.macs)),
            safe(f"{m.bmc.driver}:{m.bmc.address}") if m.bmc else "-",
            safe((last_events or {}).get(m.name, m.state_reason or "")),
        )
    return table


def _public(record: Any) -> dict[str, Any]:  # noqa: ANN401 - a record dataclass
    return dataclasses.asdict(record)


@machines.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--cluster", help="Only machines of this cluster.")
@click.option("--state", "wanted_state", help="Only machines in this state.")
@pass_state
def list_(state: CliState, as_json: bool, cluster: str | None, wanted_state: str | None) -> None:
    """List machines with their state."""
    records = run(state.with_store(lambda st: st.list_machines()))
    records = [
        r
        for r in records
        if (cluster is None or r.cluster == cluster) and (wanted_state is None or r.state == wanted_state)
    ]
    if as_json:
        emit_json([_public(r) for r in records])
        return
    console.print(machine_table(records))


@machines.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def show(state: CliState, name: str, as_json: bool) -> None:
    """Show one machine (BMC passwords are never shown)."""
    record = run(state.with_store(lambda st: st.get_machine(name)))
    if record is None:
        die(f"no machine named {name!r}")
    data = _public(record)
    if record.state in CONFIG_DELIVERY_STATES:
        # The per-boot code the operator types on the console (docs/threats.md H1): the
        # newest `config.code` event, shown while the config can still be fetched.
        coded = run(state.with_store(lambda st: st.list_events(machine=name, kind="config.code", limit=1)))
        if coded:
            data["config_code"] = coded[0].data.get("code")
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        shown = value
        if key == "bmc" and value is not None:
            shown = {k: v for k, v in value.items() if v not in (None, "", {})}
        console.print(f"[bold]{key}[/bold]: {safe(shown)}", markup=True, soft_wrap=True)


@machines.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=50, show_default=True)
@pass_state
def events(state: CliState, name: str, as_json: bool, limit: int) -> None:
    """Show a machine's events, newest first."""
    rows = run(state.with_store(lambda st: st.list_events(machine=name, limit=limit)))
    if as_json:
        emit_json([dataclasses.asdict(r) for r in rows])
        return
    table = Table("ID", "AT", "KIND", "SEVERITY", "ACTOR", "MESSAGE")
    for r in rows:
        table.add_row(
            str(r.id),
            r.at.isoformat(timespec="seconds"),
            safe(r.kind),
            safe(r.severity),
            safe(r.actor),
            safe(r.message or r.data),
        )
    console.print(table)


@machines.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def release(state: CliState, name: str, as_json: bool) -> None:
    """Unfreeze NAME's provisioning window after a spoofing alert (through the daemon's API).

    Check the alert first (`machines events NAME`): it names the two addresses that asked
    for the machine's config token. Releasing lets the next request get a token again.
    """
    from provisioner.web.client import ApiClient, ApiError, DaemonUnreachableError

    try:
        result = ApiClient.from_settings(state.settings).release(name)
    except (ApiError, DaemonUnreachableError) as exc:
        die(str(exc))
    if as_json:
        emit_json(result)
    elif result.get("released"):
        console.print(f"{name}: provisioning window released")
    else:
        console.print(f"{name}: window was not frozen; nothing to release")
