"""The lab's machine table: the one place stable identities are defined.

inventory/lab.yaml is written from this same table. Machine ``i`` (0-based) gets MAC
52:54:00:77:00:<0x10+i>, SMBIOS UUID 00000000-0000-4000-8000-5254007700<0x10+i>, address
10.77.0.<10+i>, BMC port 6230+i and tap ``labtap<i>``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BMC_PORT_BASE",
    "BRIDGE_ADDRESS",
    "MAX_MACHINES",
    "Machine",
    "lab_machines",
]

BRIDGE_ADDRESS = "10.77.0.1"
BMC_PORT_BASE = 6230
MAX_MACHINES = 16
_NAMES = ("lab-cp1", "lab-w1", "lab-w2")


@dataclass(frozen=True)
class Machine:
    """One lab VM's fixed identity."""

    index: int
    name: str
    role: str  # "controlplane" | "worker"
    mac: str
    uuid: str
    serial: str
    ip: str
    bmc_port: int
    tap: str


def _machine(index: int) -> Machine:
    octet = 0x10 + index
    name = _NAMES[index] if index < len(_NAMES) else f"lab-w{index}"
    return Machine(
        index=index,
        name=name,
        role="controlplane" if index == 0 else "worker",
        mac=f"52:54:00:77:00:{octet:02x}",
        uuid=f"00000000-0000-4000-8000-5254007700{octet:02x}",
        serial=f"LAB{octet:04X}",
        ip=f"10.77.0.{10 + index}",
        bmc_port=BMC_PORT_BASE + index,
        tap=f"labtap{index}",
    )


def lab_machines(count: int) -> list[Machine]:
    """Return the first ``count`` lab machines (lab-cp1, lab-w1, lab-w2, lab-w3, ...)."""
    if not 1 <= count <= MAX_MACHINES:
        msg = f"machine count must be 1..{MAX_MACHINES}, not {count}"
        raise ValueError(msg)
    return [_machine(i) for i in range(count)]
