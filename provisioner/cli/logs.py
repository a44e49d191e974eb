"""`provisioner machines logs NAME [--follow]`: the node's kernel log, through the daemon's API.

The lines are the ones the node sent to the daemon's kernel-log receiver
(`talos.logging.kernel=` / `KmsgLogConfig`, docs/talos.md "Telemetry"), kept in memory.
"""

from __future__ import annotations

import click

from provisioner.cli.common import CliState, console, die, pass_state

__all__ = ["logs"]


def _text(line: dict[str, object]) -> str:
    where = f"{line.get('facility') or '-'}.{line.get('priority') or line.get('level') or '-'}"
    return f"{line.get('time') or line.get('received')} {where}: {line.get('msg')}"


@click.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines as they arrive (Ctrl-C ends).")
@click.option(
    "--lines", "-n", default=100, show_default=True, help="How many of the newest lines to show first."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
def logs(state: CliState, name: str, follow: bool, lines: int, as_json: bool) -> None:
    """Show a machine's kernel log as its node sent it (newest last)."""
    import json

    from provisioner.web.client import ApiClient, ApiError, DaemonUnreachableError

    try:
        client = ApiClient.from_settings(state.settings)
        if follow:
            stream = client.follow_logs(name, limit=lines)
        else:
            stream = iter(client.machine_logs(name, limit=max(1, lines))["items"])
        for line in stream:
            if as_json:
                click.echo(json.dumps(line))
            else:
                console.print(_text(line), markup=False, highlight=False, soft_wrap=True)
    except (ApiError, DaemonUnreachableError) as exc:
        die(str(exc))
    except KeyboardInterrupt:
        pass
