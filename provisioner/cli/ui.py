"""`provisioner ui`: per-user tokens for the web console (docs/ui.md)."""

from __future__ import annotations

import click

from provisioner.cli.common import CliState, console, die, pass_state

__all__ = ["ui"]


@click.group()
def ui() -> None:
    """The web console's users (each logs in with their own token)."""


@ui.group()
def user() -> None:
    """Add, list and remove console users."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May download cluster talosconfigs.")
@pass_state
def add(state: CliState, name: str, admin: bool) -> None:
    """Create NAME's token (or replace it) and print it once; only its hash is kept."""
    from provisioner.web.ui.users import add_user

    try:
        token = add_user(state.settings.state_dir, name, admin=admin)
    except ValueError as exc:
        die(str(exc), code=2)
    click.echo(token)
    click.echo(
        f"user {name} ({'admin' if admin else 'operator'}): log in at /ui/ with the token above", err=True
    )


@user.command("list")
@pass_state
def list_(state: CliState) -> None:
    """Every console user, whether admin, when created."""
    from provisioner.web.ui.users import list_users

    for name, admin, created in list_users(state.settings.state_dir):
        click.echo(f"{name}\t{'admin' if admin else 'operator'}\t{created}")


@user.command("remove")
@click.argument("name")
@pass_state
def remove(state: CliState, name: str) -> None:
    """Remove NAME; their open sessions end at their next request."""
    from provisioner.web.ui.users import remove_user

    if not remove_user(state.settings.state_dir, name):
        die(f"no console user {name!r}", code=1)
    console.print(f"removed {name}")
