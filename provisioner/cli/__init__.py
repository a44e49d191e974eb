"""The `provisioner` command. Each subcommand group lives in its own module."""

from __future__ import annotations

import importlib

import click

from provisioner.cli.common import CliState

__all__ = ["cli", "main"]

# (module, attribute) of each subcommand, in --help order. Modules import lazily so that
# `provisioner --help` does not pay for scapy, grpc and the database drivers.
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("provisioner.cli.serve", "serve"),
    "inventory": ("provisioner.cli.inventory", "inventory"),
    "machines": ("provisioner.cli.machines", "machines"),
    "power": ("provisioner.cli.power", "power"),
    "provision": ("provisioner.cli.power", "provision"),
    "deprovision": ("provisioner.cli.power", "deprovision"),
    "reprovision": ("provisioner.cli.power", "reprovision"),
    "cluster": ("provisioner.cli.cluster", "cluster"),
    "assets": ("provisioner.cli.assets", "assets"),
    "dhcp": ("provisioner.cli.dhcp", "dhcp"),
    "db": ("provisioner.cli.db", "db"),
    "ui": ("provisioner.cli.ui", "ui"),
}

_SHORT_HELP = {
    "serve": "Run the daemon (DHCP, TFTP, HTTP, power, reconciler, trustd).",
    "inventory": "Validate, apply and export inventory files.",
    "machines": "List machines, show one, its events or its kernel log.",
    "power": "Power machines on/off/cycle, show status, set the boot device.",
    "provision": "Power machines on into PXE and follow them to Provisioned.",
    "deprovision": "Power machines off, revoke their tokens, back to Registered.",
    "reprovision": "Provision machines again from scratch.",
    "cluster": "Talos secrets bundles, machine configs, talosconfig, validation.",
    "assets": "Import and list kernel/initramfs boot asset sets.",
    "dhcp": "DHCP tools (probe a segment for DHCP servers).",
    "db": "Database schema migrations.",
    "ui": "Web console users (per-user login tokens).",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002 - click's signature
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: ARG002
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        command = getattr(module, target[1])
        if not isinstance(command, click.Command):
            msg = f"{target} is not a click command"
            raise TypeError(msg)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: ARG002
        with formatter.section("Commands"):
            formatter.write_dl([(name, _SHORT_HELP[name]) for name in _COMMANDS])


@click.group(cls=_LazyGroup)
@click.option(
    "--config",
    "config_path",
    envvar="PROVISIONER_CONFIG",
    type=click.Path(dir_okay=False),
    help="Settings file (default: ./provisioner.toml if present, else built-in defaults).",
)
@click.version_option(package_name="provisioner")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Provision bare-metal servers into Talos Linux nodes.

    Every command reads the same settings as the daemon (--config or PROVISIONER_CONFIG,
    plus PROVISIONER_* variables). Commands that act on machines go through the running
    daemon's API; inventory, cluster, assets and db work without a daemon.
    """
    ctx.obj = CliState(config_path)


def main() -> None:
    """Entry point of the `provisioner` script."""
    cli()
