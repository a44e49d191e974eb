"""What every command shares: settings loading, the store, output helpers."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from provisioner.settings import Settings, SettingsError, load_settings, resolve_config_path

if TYPE_CHECKING:  # the database layer is imported only by commands that use it
    from provisioner.store.repository import SqlStore

__all__ = ["CliState", "console", "die", "emit_json", "err_console", "pass_state", "run", "safe"]

T = TypeVar("T")

# Piped output (CI logs, `| less`) gets a wide table instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False)


# C0 and C1 controls, DEL, and the bidirectional overrides/isolates (a "Trojan Source"
# reordering of what the operator reads): none belongs in a terminal cell.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(value: object, *, markup: bool = True) -> str:
    """A value for the terminal: control characters removed, rich markup escaped.

    Discovered machines' arch and vendor class, hostnames, event messages and data, BMC
    and API error texts came from the network (issue 14): an escape sequence or a rich
    tag in them must print as text, not act. Every value the CLI prints through rich
    goes through here (`markup=False` for output printed without markup).
    """
    text = _CONTROL.sub("", value if isinstance(value, str) else str(value))
    return escape(text) if markup else text


def die(message: str, code: int = 1) -> NoReturn:
    """Print an error and exit."""
    # The message is data (paths, addresses like [::1]:80, network text), never markup.
    err_console.print(f"[red]error:[/red] {safe(message)}", markup=True, soft_wrap=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from a command."""
    return asyncio.run(coro)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit_json(data: object) -> None:
    """Print `data` as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=_json_default, sort_keys=False))


@dataclass
class CliState:
    """Per-invocation state: where the settings come from, loaded on first use."""

    config_path: str | None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The settings (exit 2 with the file and key on a bad setting)."""
        if self._settings is None:
            import os

            try:
                self._settings = load_settings(resolve_config_path(self.config_path, os.environ))
            except SettingsError as exc:
                die(str(exc), code=2)
        return self._settings

    def open_store(self) -> SqlStore:
        """A store on the configured database (the caller closes it)."""
        from provisioner.store.repository import SqlStore

        s = self.settings
        return SqlStore.open(s.db_url, s.state_dir)

    async def with_store(self, work: Callable[[SqlStore], Awaitable[T]], *, migrate: bool = True) -> T:
        """Open the store (migrating the schema first), run `work`, close."""
        store = self.open_store()
        try:
            if migrate:
                from provisioner.store.migrate import upgrade

                await upgrade(store.engine)
            return await work(store)
        finally:
            await store.close()


pass_state = click.make_pass_decorator(CliState)
