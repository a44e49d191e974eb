"""`provisioner serve`: run the daemon."""

from __future__ import annotations

import click

from provisioner.cli.common import CliState, run

__all__ = ["serve"]


@click.command()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Settings file (as the global --config)."
)
@click.pass_context
def serve(ctx: click.Context, config_path: str | None) -> None:
    """Run the daemon: DHCP, TFTP, HTTP (iPXE, assets, configs, API, metrics), power, trustd.

    Logs one JSON line per event to stderr; stops cleanly on SIGINT or SIGTERM.
    """
    state = ctx.find_object(CliState)
    if state is None or config_path:
        state = CliState(config_path or (state.config_path if state else None))
    settings = state.settings
    from provisioner.daemon import run_daemon
    from provisioner.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    run(run_daemon(settings))
