"""Where every running lab is listed, so one whose owner died can still be found.

Each ``up`` writes ``<registry>/<namespace>.json`` (default registry /run/pvlab, env
LAB_REGISTRY) naming its state directory and, optionally, an owner process (a test run, or
``lab up --foreground``). ``down`` deletes the entry. ``lab down --stale`` (and the test
suite, at session start) takes down every lab whose owner is gone: that is how a
``kill -9`` of a whole test run gets cleaned up later.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.state import process_start_time

__all__ = ["RegistryEntry", "entries", "forget", "record", "registry_dir"]


@dataclass(frozen=True)
class RegistryEntry:
    """One registered lab."""

    namespace: str
    state_dir: str
    owner_pid: int | None = None
    owner_start: str | None = None

    def owner_gone(self) -> bool:
        """Tell whether the lab had an owner and that very process no longer runs."""
        if self.owner_pid is None:
            return False
        return process_start_time(self.owner_pid) != self.owner_start


def registry_dir() -> Path:
    """Return the registry directory."""
    return Path(os.environ.get("LAB_REGISTRY", "/run/pvlab"))


def record(namespace: str, state_dir: Path, owner_pid: int | None) -> None:
    """Register a lab."""
    directory = registry_dir()
    directory.mkdir(parents=True, exist_ok=True)
    owner_start = process_start_time(owner_pid) if owner_pid is not None else None
    entry = RegistryEntry(namespace, str(state_dir), owner_pid, owner_start)
    path = directory / f"{namespace}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(entry)) + "\n", encoding="utf-8")
    tmp.replace(path)


def forget(namespace: str) -> None:
    """Unregister a lab."""
    (registry_dir() / f"{namespace}.json").unlink(missing_ok=True)


def entries() -> list[RegistryEntry]:
    """Every registered lab."""
    found = []
    for path in sorted(registry_dir().glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            found.append(RegistryEntry(**json.loads(path.read_text(encoding="utf-8"))))
    return found
