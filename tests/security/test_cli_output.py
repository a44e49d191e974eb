"""Issue 14 (low): network-supplied strings must not reach the terminal as escapes or markup.

A discovered machine's arch comes from the `/ipxe` query (or DHCP option 93/60), event
messages carry client text. Before the fix the CLI's rich tables passed escape sequences
through and interpreted `[...]` as rich markup (an unmatched closing tag even crashed the
command).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from click.testing import CliRunner

from provisioner.cli import cli
from provisioner.cli.common import safe
from provisioner.events import Event, utcnow
from provisioner.store.migrate import upgrade
from provisioner.store.repository import Store

if TYPE_CHECKING:
    from pathlib import Path

EVIL = "\x1b]0;pwned\x07\x1b[2J[/bold][link=http://evil.example]click[/link]\u202etxt.exe\x9b31m"


def _seed(state: Path) -> None:
    async def work() -> None:
        store = Store.open(f"sqlite+aiosqlite:///{state}/provisioner.db", state)
        try:
            await upgrade(store.engine)
            await store.record_discovered("52:54:00:aa:bb:cc", arch=EVIL, uuid=EVIL, source="http")
            await store.append_events([Event("boot.unknown", utcnow(), machine="m1", message=EVIL)])
        finally:
            await store.close()

    asyncio.run(work())


def _run(settings: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(settings), *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_safe_strips_controls_and_escapes_markup() -> None:
    shown = safe(EVIL)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert "\u202e" not in shown
    assert "\\[/bold]" in shown and "\\[link=" in shown  # escaped: printed as text
    assert safe(EVIL, markup=False).startswith("]0;pwned[2J[/bold]")


def test_discovered_and_events_tables_print_network_strings_inertly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = tmp_path / "provisioner.toml"
    settings.write_text(f'state_dir = "{state}"\n')
    _seed(state)
    for args in (("inventory", "discovered"), ("machines", "events", "m1")):
        out = _run(settings, *args)
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\u202e" not in out
        assert "pwned" in out  # the text is shown, only its control characters are gone
        assert "[link=" in out or "[/bo" in out  # markup printed literally, not applied
