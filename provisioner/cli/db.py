"""`provisioner db`: schema migrations."""

from __future__ import annotations

import click

from provisioner.cli.common import CliState, console, pass_state, run, safe

__all__ = ["db"]


@click.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command()
@pass_state
def upgrade(state: CliState) -> None:
    """Apply every pending schema migration (safe to run repeatedly)."""
    from provisioner.store.migrate import current_revision
    from provisioner.store.migrate import upgrade as do_upgrade

    async def work() -> tuple[str | None, str | None]:
        store = state.open_store()
        try:
            before = await current_revision(store.engine)
            await do_upgrade(store.engine)
            return before, await current_revision(store.engine)
        finally:
            await store.close()

    before, after = run(work())
    if before == after:
        console.print(f"database is up to date (revision {safe(after)})")
    else:
        console.print(f"database upgraded: {safe(before or 'empty')} -> {safe(after)}")


@db.command()
@pass_state
def revision(state: CliState) -> None:
    """Print the database's current schema revision."""
    from provisioner.store.migrate import current_revision

    async def work() -> str | None:
        store = state.open_store()
        try:
            return await current_revision(store.engine)
        finally:
            await store.close()

    console.print(safe(run(work()) or "empty"))
