"""The machine directory: the current `MachineIndex`, reloaded from the store.

The hot paths (DHCP answers, boot scripts) match requests against an in-memory index and
never wait on SQL; this part replaces the index atomically every `interval_s` (and on
`refresh()`), so inventory changes and lifecycle moves reach them within seconds.
Consumers receive `current` (a `Callable[[], MachineIndex]`), never this class.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from provisioner.matching import MachineIndex
from provisioner.store.records import MachineRecord
from provisioner.tasks import cancel_and_wait

__all__ = ["MACHINE_INDEX_REFRESH_S", "MachineDirectory", "MachineLister"]

log = logging.getLogger(__name__)

MACHINE_INDEX_REFRESH_S = 2.0


class MachineLister(Protocol):
    """The store operation the directory needs."""

    async def list_machines(self) -> list[MachineRecord]:
        """Every machine, by name."""
        ...


class MachineDirectory:
    """Holds the current index; `start()` runs the periodic reload."""

    def __init__(self, store: MachineLister, *, interval_s: float = MACHINE_INDEX_REFRESH_S) -> None:
        self._store = store
        self._interval = interval_s
        self._index = MachineIndex([])
        self._task: asyncio.Task[None] | None = None

    def current(self) -> MachineIndex:
        """The current machine index (replaced atomically on refresh, never mutated)."""
        return self._index

    async def refresh(self) -> MachineIndex:
        """Reload the index from the store now."""
        records = await self._store.list_machines()
        self._index = MachineIndex([r.summary() for r in records])
        return self._index

    async def start(self) -> None:
        """Load once now, then reload in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="machine-index")

    async def stop(self) -> None:
        """Stop reloading."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("machine index refresh failed")
