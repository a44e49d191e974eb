"""What a lab VM's serial console says about its boots: the agent's markers, per boot.

The lab node agent writes ``LAB-AGENT: ...`` lines to the serial port and, when a step
fails, ``LAB-AGENT: FAILED <reason>`` (then idles). Until nodes report events to the
provisioner, these lines are the only place a node's own error appears; ``lab status``
and the demo's summary read them from here so the operator need not read serial logs.

A serial log is appended to across power cycles. A boot starts at a lab BMC line
(``=== LAB-BMC: power on`` or ``reset``) or, for resets no BMC line marks (libvirt's
virtualbmc), at ``LAB-AGENT: start`` when the current boot already has agent markers.
Pure: text in, records out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["AGENT_PREFIX", "AgentBoot", "AgentReport", "agent_boots", "agent_report", "read_agent_report"]

AGENT_PREFIX = "LAB-AGENT: "
BMC_PREFIX = "=== LAB-BMC: "
_FAILED = "FAILED "
_START = "start"


@dataclass(frozen=True, slots=True)
class AgentBoot:
    """The agent markers of one boot (without the ``LAB-AGENT: `` prefix), in order."""

    markers: tuple[str, ...]

    @property
    def failure(self) -> str | None:
        """The reason of the boot's ``FAILED`` marker, if the agent failed."""
        for marker in self.markers:
            if marker.startswith(_FAILED):
                return marker.removeprefix(_FAILED)
        return None

    @property
    def last(self) -> str:
        """The boot's last marker (where the agent got to)."""
        return self.markers[-1] if self.markers else ""


@dataclass(frozen=True, slots=True)
class AgentReport:
    """A machine's agent boots, summed up for a table."""

    boots: tuple[AgentBoot, ...]

    @property
    def failures(self) -> tuple[str, ...]:
        """``boot N: <reason>`` for every boot whose agent failed (N counts from 1)."""
        return tuple(
            f"boot {number}: {boot.failure}"
            for number, boot in enumerate(self.boots, start=1)
            if boot.failure is not None
        )

    @property
    def last(self) -> str:
        """The last marker of the last boot that reached the agent ("" if none did)."""
        for boot in reversed(self.boots):
            if boot.markers:
                return boot.last
        return ""


def agent_boots(text: str) -> list[AgentBoot]:
    """Split a serial log into boots and keep each boot's agent markers.

    Boots in which the agent never ran (firmware only, or before the first BMC line)
    are dropped: they have nothing to say about the node.
    """
    boots: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = raw.strip("\r\x00 ")
        if line.startswith(BMC_PREFIX):
            boots.append([])
            continue
        at = line.find(AGENT_PREFIX)
        if at < 0:
            continue  # firmware, kernel and other console output
        marker = line[at + len(AGENT_PREFIX) :].strip()
        if marker.startswith(_START) and boots[-1]:
            boots.append([])
        boots[-1].append(marker)
    return [AgentBoot(tuple(markers)) for markers in boots if markers]


def agent_report(text: str) -> AgentReport:
    """The agent boots of one serial log."""
    return AgentReport(tuple(agent_boots(text)))


def read_agent_report(serial_log: Path, start: int = 0) -> AgentReport:
    """The agent boots of a serial log file from byte ``start`` on (none if the VM never ran)."""
    try:
        with serial_log.open("rb") as log:
            log.seek(start)
            text = log.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return AgentReport(())
    return agent_report(text)
