"""Run the daemon: open the store, build the parts, start them in order, stop in reverse.

`run_daemon(settings)` prepares the state directory, brings the schema up to date (as
`provisioner db upgrade` would; an unreachable database is one StartupError naming the
setting), builds every part (build.py), starts them in `Daemon.parts()` order, and waits
for SIGINT/SIGTERM (or `stopping`). The parts are stopped in reverse order; the event writer,
started first, flushes last; then the store closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from provisioner.daemon.build import Daemon, build_daemon
from provisioner.events import Event, utcnow
from provisioner.settings import Settings
from provisioner.startup import prepare_state_dir
from provisioner.store.db import database_error
from provisioner.store.migrate import upgrade
from provisioner.store.repository import SqlStore

__all__ = ["run_daemon"]

log = logging.getLogger(__name__)


async def run_daemon(
    settings: Settings,
    *,
    ready: Callable[[Daemon], None] | None = None,
    stopping: asyncio.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or until `stopping` is set)."""
    prepare_state_dir(settings.state_dir)
    try:
        store = SqlStore.open(settings.db_url, settings.state_dir)
    except Exception as exc:
        raise database_error(settings.database_url, settings.db_url, exc) from exc
    stop = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await upgrade(store.engine)
        except Exception as exc:
            raise database_error(settings.database_url, settings.db_url, exc) from exc
        daemon = build_daemon(settings, store)
        async with AsyncExitStack() as stack:
            for name, part in daemon.parts():
                log.info("starting %s", name)
                await part.start()
                stack.push_async_callback(_stop, name, part.stop)
                if part is daemon.events:
                    # Runs after every later part stopped, before the writer's last flush.
                    stack.callback(_emit_stopped, daemon)
            daemon.events.emit(Event(kind="daemon.started", at=utcnow(), data={"instance": daemon.instance}))
            log.info("provisioner ready", extra={"instance": daemon.instance})
            if ready is not None:
                ready(daemon)
            await stop.wait()
            log.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await store.close()


async def _stop(name: str, stop: Callable[[], Awaitable[None]]) -> None:
    log.info("stopping %s", name)
    await stop()


def _emit_stopped(daemon: Daemon) -> None:
    daemon.events.emit(Event(kind="daemon.stopped", at=utcnow(), data={"instance": daemon.instance}))
