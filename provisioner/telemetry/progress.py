"""What a node's events say about its install: a per-machine reading of the event stream.

Pure. Modelled on Talos's own MachineStatus controller
(internal/app/machined/pkg/controllers/runtime/machine_status.go, v1.13.9): the install
sequence runs on every boot, so the install is recognised by its phases, not by the
sequence: phase `install` START inside sequence `install` means installing; a later
phase of that sequence (`kexec`/`reboot`, after the installer has written the disk)
means the install finished and the node is rebooting; a `boot`/`initialize` sequence
START after that is the node up again from its disk. Talos reports a failed sequence as
a NOOP SequenceEvent carrying `common.Error` ("sequence failed: ..."), published after the
deferred STOP (v1alpha1_controller.go Run/run), so STOP alone never means success.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from provisioner.talos.api.pb.machine import machine_pb2 as m
from provisioner.telemetry.decode import NodeEvent

__all__ = ["InstallProgress", "NodeSignal", "Reading"]

_AFTER_INSTALL_PHASES = frozenset({"kexec", "reboot"})


class NodeSignal(enum.StrEnum):
    """What the lifecycle learns from a node."""

    INSTALLING = "installing"
    INSTALLED = "installed"  # install finished, the node reboots into its disk
    BOOTED = "booted"  # a boot sequence started after the install
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Reading:
    """A signal and the node's words for it."""

    signal: NodeSignal
    message: str


class InstallProgress:
    """Per-machine memory of the current sequence (one instance for all machines)."""

    def __init__(self) -> None:
        self._sequence: dict[str, str] = {}
        self._installed: set[str] = set()

    def forget(self, machine: str) -> None:
        """A new provisioning run starts: drop what the last one said."""
        self._sequence.pop(machine, None)
        self._installed.discard(machine)

    def read(self, machine: str, event: NodeEvent) -> Reading | None:  # noqa: PLR0911
        """The signal in this event for this machine, if any."""
        msg = event.message
        if isinstance(msg, m.ConfigLoadErrorEvent | m.ConfigValidationErrorEvent):
            return Reading(NodeSignal.ERROR, event.line)
        if isinstance(msg, m.SequenceEvent):
            if msg.action == m.SequenceEvent.START:
                self._sequence[machine] = msg.sequence
                if msg.sequence in {"boot", "initialize"} and machine in self._installed:
                    return Reading(NodeSignal.BOOTED, event.line)
            elif msg.action == m.SequenceEvent.STOP:
                self._sequence.pop(machine, None)
            if event.error and msg.sequence in {"install", "initialize", "boot"}:
                return Reading(NodeSignal.ERROR, f"sequence {msg.sequence}: {event.error}")
            return None
        if isinstance(msg, m.PhaseEvent) and msg.action == m.PhaseEvent.START:
            if self._sequence.get(machine) != "install":
                return None
            if msg.phase == "install":
                return Reading(NodeSignal.INSTALLING, event.line)
            if msg.phase in _AFTER_INSTALL_PHASES:
                self._installed.add(machine)
                return Reading(NodeSignal.INSTALLED, event.line)
        if isinstance(msg, m.MachineStatusEvent) and msg.stage == m.MachineStatusEvent.INSTALLING:
            return Reading(NodeSignal.INSTALLING, event.line)
        return None
