"""`provisioner serve`: run the daemon."""

from __future__ import annotations

import click

from provisioner.cli.common import CliState, die, run

__all__ = ["serve"]


@click.command()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Settings file (as the global --config)."
)
@click.pass_context
def serve(ctx: click.Context, config_path: str | None) -> None:
    """Run the daemon: DHCP, TFTP, HTTP (iPXE, assets, configs, API, metrics), power, trustd.

    Logs one JSON line per event to stderr; stops cleanly on SIGINT or SIGTERM. A start-up
    failure (port in use, unknown interface, unusable state directory, unreachable
    database, bad setting) prints one line naming the setting and its value and exits 2;
    log lines are held until the daemon is ready (printed before the error only at
    log_level debug).
    """
    state = ctx.find_object(CliState)
    if state is None or config_path:
        state = CliState(config_path or (state.config_path if state else None))
    settings = state.settings
    from provisioner.daemon import run_daemon
    from provisioner.logs import setup_logging
    from provisioner.startup import EXIT_STATUS, HeldLogs, StartupError

    setup_logging(settings.log_level, settings.log_format)
    held = HeldLogs()
    try:
        run(run_daemon(settings, ready=lambda _rt: held.pass_held()))
    except StartupError as exc:
        if settings.log_level == "debug":
            held.pass_held()
        else:
            held.drop_held()
        die(str(exc), code=EXIT_STATUS)
    finally:
        held.pass_held()
