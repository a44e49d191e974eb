"""The lab's record of what it created, so ``lab down`` can undo it after any crash.

Every resource is written to the state file *before* it is created (namespace, taps) or
right after (process ids, with their start times so a recycled pid is never killed).
The file is replaced atomically on each change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["LabState", "ProcessRecord", "process_start_time"]

STATE_FILE = "state.json"


def process_start_time(pid: int) -> str | None:
    """Return the kernel start time of live process ``pid`` (``/proc/PID/stat`` field 22).

    None when there is no such process or it is a zombie (exited, not yet reaped): the
    start time tells a recycled pid from the process the lab recorded.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        return None
    return fields[19]


@dataclass
class ProcessRecord:
    """A process the lab started."""

    role: str
    pid: int
    start: str

    def alive(self) -> bool:
        """Tell whether this very process (not a recycled pid) still runs."""
        return process_start_time(self.pid) == self.start


@dataclass
class LabState:
    """Everything one ``lab up`` created."""

    state_dir: str
    namespace: str
    bridge: str
    machines: int
    firmware: str
    taps: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    namespace_created: bool = False
    created_dirs: list[str] = field(default_factory=list)  # deepest first
    backend: str = "qemu"  # "libvirt": lab.libvirt_backend (older state files lack it)

    @property
    def path(self) -> Path:
        """The state file."""
        return Path(self.state_dir) / STATE_FILE

    def save(self) -> None:
        """Write the state file atomically."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)

    def add_process(self, role: str, pid: int) -> None:
        """Record a started process and save."""
        start = process_start_time(pid)
        if start is not None:
            self.processes.append(ProcessRecord(role, pid, start))
        self.save()

    @classmethod
    def load(cls, state_dir: Path) -> LabState | None:
        """Read the state file of ``state_dir``; None if there is none."""
        path = state_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        raw["processes"] = [ProcessRecord(**p) for p in raw.get("processes", [])]
        return cls(**raw)

    def remove(self) -> None:
        """Delete the state file."""
        self.path.unlink(missing_ok=True)
