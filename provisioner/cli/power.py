"""`provisioner power|provision|deprovision|reprovision`: act on machines through the daemon's API."""

from __future__ import annotations

import itertools
import sys
import time
from datetime import datetime
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from provisioner.cli.common import CliState, console, die, emit_json, err_console, pass_state, safe

__all__ = ["deprovision", "power", "provision", "reprovision", "stage_times"]

DONE_OK = {"Provisioned"}
WAIT_POLL_S = 1.0


def _client(state: CliState) -> Any:  # noqa: ANN401 - ApiClient, imported lazily
    from provisioner.web.client import ApiClient, DaemonUnreachableError

    try:
        return ApiClient.from_settings(state.settings)
    except DaemonUnreachableError as exc:
        die(str(exc))


def _call(fn: Any, *args: Any, **kw: Any) -> Any:  # noqa: ANN401
    from provisioner.web.client import ApiError, DaemonUnreachableError

    try:
        return fn(*args, **kw)
    except (ApiError, DaemonUnreachableError) as exc:
        return exc


@click.group()
def power() -> None:
    """Power machines through their BMCs (via the running daemon)."""


def _failure(name: str, error: Exception) -> dict[str, Any]:
    """One failed machine: the daemon's words and, for BMC failures, its reason code."""
    reason = getattr(error, "reason", "") or ""
    detail = getattr(error, "detail", "") or str(error)
    status = getattr(error, "status", None)
    out: dict[str, Any] = {"machine": name, "ok": False, "error": detail}
    if reason:
        out["reason"] = reason
    if status is not None:
        out["status"] = status
    return out


def _power_many(state: CliState, action: str, names: tuple[str, ...], as_json: bool, **kw: Any) -> None:  # noqa: ANN401
    client = _client(state)
    results = []
    for name in names:
        out = _call(client.power, name, action, **kw)
        if isinstance(out, Exception):
            results.append(_failure(name, out))
        else:
            results.append({"machine": name, "ok": True, "result": out.get("result")})
    failures = [r for r in results if not r["ok"]]
    if as_json:
        emit_json(results)
    else:
        table = Table("MACHINE", "RESULT")
        for r in results:
            shown = r["result"] if r["ok"] else f"failed ({r.get('reason') or r.get('status')})"
            if isinstance(shown, dict):
                shown = ", ".join(f"{k}={v}" for k, v in shown.items())
            cell = safe(shown) if r["ok"] else f"[red]{safe(shown)}[/red]"
            table.add_row(safe(r["machine"]), cell)
        console.print(table)
    # Each failure in full on stderr, one line per machine: the table would wrap it.
    for r in failures:
        tag = f" [{r['reason']}]" if r.get("reason") else ""
        err_console.print(
            safe(f"error: {r['machine']}: power {action}: {r['error']}{tag}", markup=False),
            markup=False,
            soft_wrap=True,
        )
    if failures:
        sys.exit(1)


def _simple(action: str, doc: str) -> click.Command:
    @click.argument("names", nargs=-1, required=True)
    @click.option("--json", "as_json", is_flag=True)
    @pass_state
    def command(state: CliState, names: tuple[str, ...], as_json: bool) -> None:
        _power_many(state, action, names, as_json)

    command.__doc__ = doc
    return power.command(action)(command)


_simple("on", "Power machines on.")
_simple("off", "Power machines off (hard).")
_simple("cycle", "Power-cycle machines.")
_simple("reset", "Reset machines.")
_simple("status", "Show machines' power state as their BMCs report it.")


@power.command()
@click.argument("device", type=click.Choice(["pxe", "disk"]))
@click.argument("names", nargs=-1, required=True)
@click.option("--persistent", is_flag=True, help="Keep the device for every boot (default: next boot only).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def bootdev(state: CliState, device: str, names: tuple[str, ...], persistent: bool, as_json: bool) -> None:
    """Set the next boot device of machines: pxe or disk."""
    _power_many(state, "bootdev", names, as_json, device=device, persistent=persistent)


# -- provisioning runs --------------------------------------------------------------------


def _targets(client: Any, names: tuple[str, ...], all_: bool) -> list[str]:  # noqa: ANN401
    if all_ == bool(names):
        die("give machine names or --all (not both)")
    if all_:
        return [m["name"] for m in client.machines()]
    return list(names)


def _finished(m: dict[str, Any], goal: str) -> bool:
    state, desired = str(m["state"]), str(m["desired"])
    if desired == "reprovision":  # not picked up yet: its old state says nothing
        return False
    if goal == "provisioned":
        return state in DONE_OK or (state == "Failed" and desired == "none")
    return state == "Registered" and desired == "none"


def _age(since: str | None) -> str:
    if not since:
        return "-"
    seconds = max(0, int(time.time() - datetime.fromisoformat(since).timestamp()))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _live_table(machines: list[dict[str, Any]], started: float) -> Table:
    table = Table(title=f"provisioning ({int(time.monotonic() - started)}s)")
    for column in ("MACHINE", "STATE", "IN STATE", "ATTEMPT", "LAST"):
        table.add_column(column)
    for m in machines:
        style = {"Provisioned": "green", "Failed": "red"}.get(m["state"], "yellow")
        table.add_row(
            safe(m["name"]),
            f"[{style}]{safe(m['state'])}[/{style}]",
            _age(m.get("state_since")),
            safe(m.get("attempts", 0)),
            safe((m.get("state_reason") or "")[:90]),
        )
    return table


# The web layer records the move Netbooting -> ConfigServed as its own "config.served"
# event (provisioner/web/config.py, with the token and source), not as a
# machine.transition; counting only the latter folded ConfigServed into Netbooting.
_STATE_EVENTS = {"config.served": "ConfigServed"}
# The stages of one run, in order; the install stages are timed only when the node sends
# Talos events (docs/lifecycle.md); with no such events their columns are left out.
_STAGES = (
    "PoweringOn",
    "Netbooting",
    "ConfigServed",
    "Installing",
    "Rebooting",
    "BootedFromDisk",
    "Trusted",
)
_INSTALL_STAGES = frozenset({"Installing", "Rebooting", "BootedFromDisk"})


def _entered(event: dict[str, Any]) -> str | None:
    """The state a machine entered with ``event``, or None if it is not a state change."""
    if event["kind"] == "machine.transition":
        return str(event["data"].get("to", "?"))
    return _STATE_EVENTS.get(event["kind"])


def stage_times(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state, from a machine's events (oldest first)."""
    times: dict[str, float] = {}
    transitions = [(e, state) for e in events if (state := _entered(e)) is not None]
    for (prev, state), (nxt, _) in itertools.pairwise(transitions):
        spent = datetime.fromisoformat(nxt["at"]).timestamp() - datetime.fromisoformat(prev["at"]).timestamp()
        times[state] = times.get(state, 0.0) + spent
    return times


def _summary(client: Any, names: list[str]) -> None:  # noqa: ANN401
    rows: list[tuple[str, dict[str, Any], dict[str, float]]] = []
    for name in names:
        m = client.machine(name)
        # Only the state changes: a Talos node's own events (node.event) are many.
        items = [
            e
            for kind in ("machine.transition", *_STATE_EVENTS)
            for e in client.events(machine=name, kind=kind, limit=1000)["items"]
        ]
        events = sorted(items, key=lambda e: e["id"])
        # Only the last run counts: from the last "provision requested" onwards.
        starts = [
            i
            for i, e in enumerate(events)
            if e["kind"] == "machine.transition"
            and e["data"].get("from") in ("Registered", "Provisioned")
            and e["data"].get("to") == "PoweringOn"
        ]
        run = events[starts[-1] :] if starts else events
        rows.append((name, m, stage_times(run)))
    # The install stages exist only for nodes that send Talos events (docs/lifecycle.md): a
    # column no machine passed through is left out rather than shown as "-" for everyone.
    stages = [s for s in _STAGES if s not in _INSTALL_STAGES or any(s in t for _, _, t in rows)]
    table = Table("MACHINE", "STATE", *stages, "TOTAL", "REASON")
    for name, m, times in rows:
        table.add_row(
            safe(name),
            safe(m["state"]),
            *(f"{times[s]:.1f}s" if s in times else "-" for s in stages),
            f"{sum(times.values()):.1f}s",
            safe(m.get("state_reason") or ""),
        )
    console.print(table)


def _wait(client: Any, names: list[str], goal: str, timeout: float) -> bool:  # noqa: ANN401
    started = time.monotonic()
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while True:
            machines = [m for m in client.machines() if m["name"] in names]
            live.update(_live_table(machines, started))
            if machines and all(_finished(m, goal) for m in machines):
                break
            if time.monotonic() - started > timeout:
                console.print(f"[red]timed out after {timeout:.0f}s[/red]")
                return False
            time.sleep(WAIT_POLL_S)
    if not console.is_terminal:
        # On a terminal Live ends its last frame with a newline; written to a pipe or a
        # file (`make demo | tee`, a test's capture) it does not, and the next table
        # would start on the live table's bottom line.
        console.line()
    if goal == "provisioned":
        _summary(client, names)
        return all(m["state"] in DONE_OK for m in machines)
    return True


def _request(
    state: CliState, names: tuple[str, ...], all_: bool, wait: bool, timeout: float, action: str
) -> None:
    client = _client(state)
    targets = _targets(client, names, all_)
    errors = 0
    for name in targets:
        out = _call(getattr(client, action), name)
        if isinstance(out, Exception):
            errors += 1
            console.print(f"[red]{safe(name)}: {safe(out)}[/red]")
        else:
            console.print(f"{safe(name)}: {action} requested")
    if errors:
        sys.exit(1)
    if wait:
        goal = "registered" if action == "deprovision" else "provisioned"
        ok = _wait(client, targets, goal, timeout)
        sys.exit(0 if ok else 1)


_wait_options = [
    click.argument("names", nargs=-1),
    click.option("--all", "all_", is_flag=True, help="Every machine in the inventory."),
    click.option("--wait", is_flag=True, help="Follow the run with a live table until it ends."),
    click.option(
        "--timeout", default=3600.0, show_default=True, help="Give up waiting after this many seconds."
    ),
]


def _with_wait_options(fn: Any) -> Any:  # noqa: ANN401
    for option in reversed(_wait_options):
        fn = option(fn)
    return fn


@click.command()
@_with_wait_options
@pass_state
def provision(state: CliState, names: tuple[str, ...], all_: bool, wait: bool, timeout: float) -> None:
    """Power machines on into PXE and follow them to Provisioned.

    With --wait, exit status 0 only if every machine reached Provisioned.
    """
    _request(state, names, all_, wait, timeout, "provision")


@click.command()
@_with_wait_options
@pass_state
def deprovision(state: CliState, names: tuple[str, ...], all_: bool, wait: bool, timeout: float) -> None:
    """Power machines off, release their leases, revoke their config tokens."""
    _request(state, names, all_, wait, timeout, "deprovision")


@click.command()
@_with_wait_options
@pass_state
def reprovision(state: CliState, names: tuple[str, ...], all_: bool, wait: bool, timeout: float) -> None:
    """Deprovision, then provision again from scratch (the machine netboots, not its old disk)."""
    _request(state, names, all_, wait, timeout, "reprovision")
