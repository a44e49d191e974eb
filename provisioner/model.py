"""Pure domain types and the normalisers every boundary uses.

Nothing here does I/O or reads a clock. MACs and UUIDs are canonicalised at the boundary
(inventory import, DHCP parse, HTTP query) so that everything inside compares strings.
"""

from __future__ import annotations

import enum
import re
import uuid as uuid_mod
from dataclasses import dataclass, field

__all__ = [
    "INSTALLED_STATES",
    "Desired",
    "MachineState",
    "MachineSummary",
    "Role",
    "normalize_mac",
    "normalize_uuid",
]


class Role(enum.StrEnum):
    """What a machine becomes in its Talos cluster."""

    CONTROLPLANE = "controlplane"
    WORKER = "worker"


class MachineState(enum.StrEnum):
    """Where a machine is in its lifecycle (docs/lifecycle.md).

    The legal moves between these live in `provisioner.lifecycle` as a table.
    """

    DISCOVERED = "Discovered"  # seen on the network, not in the inventory
    REGISTERED = "Registered"  # in the inventory, nothing running
    POWERING_ON = "PoweringOn"
    NETBOOTING = "Netbooting"
    CONFIG_SERVED = "ConfigServed"
    INSTALLING = "Installing"  # the node says it is installing to its disk (Talos events)
    REBOOTING = "Rebooting"  # the node says its install finished; it reboots into the disk
    BOOTED_FROM_DISK = "BootedFromDisk"  # the installed node is up again from its disk
    TRUSTED = "Trusted"
    PROVISIONED = "Provisioned"
    FAILED = "Failed"
    DEPROVISIONING = "Deprovisioning"


INSTALLED_STATES = frozenset(
    {MachineState.REBOOTING, MachineState.BOOTED_FROM_DISK, MachineState.TRUSTED, MachineState.PROVISIONED}
)
"""States in which an installed machine's PXE boot answers "boot from disk" (Sidero #961:
only once the node itself reported its install finished). Here, not in the lifecycle
table, because the store's records need it and the lifecycle imports the records."""


class Desired(enum.StrEnum):
    """What the operator asked for a machine (the reconciler moves it toward this)."""

    NONE = "none"  # nothing asked, or a run gave up
    PROVISIONED = "provisioned"
    REPROVISION = "reprovision"  # deprovision, then provision again (one request)
    DEPROVISIONED = "deprovisioned"


_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def normalize_mac(text: str) -> str:
    """Return the canonical `aa:bb:cc:dd:ee:ff` spelling of a 48-bit MAC.

    Accepts the spellings operators and firmware use: colons, hyphens (iPXE `hexhyp`),
    dots (Cisco `aabb.ccdd.eeff`), or bare hex, in either case. Raises ValueError.
    """
    digits = re.sub(r"[:\-.\s]", "", text.strip().lower())
    if not _MAC_HEX.fullmatch(digits):
        msg = f"not a MAC address: {text!r}"
        raise ValueError(msg)
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def normalize_uuid(text: str) -> str:
    """Return the canonical lower-case, hyphenated spelling of an SMBIOS UUID.

    The all-zero and all-ones UUIDs mean "not set" on real firmware (and QEMU without
    `-uuid` sends zeros), so they are rejected: matching on them would merge machines.
    """
    try:
        value = uuid_mod.UUID(text.strip())
    except (ValueError, AttributeError) as exc:
        msg = f"not a UUID: {text!r}"
        raise ValueError(msg) from exc
    if value.int in (0, (1 << 128) - 1):
        msg = f"placeholder UUID carries no identity: {text!r}"
        raise ValueError(msg)
    return str(value)


@dataclass(frozen=True, slots=True)
class MachineSummary:
    """The read-only view of a machine that the hot paths (DHCP, TFTP, HTTP) consult.

    Built from the database by the daemon and handed to the pure matching index, so a
    packet answer never waits on SQL.
    """

    name: str
    macs: tuple[str, ...]
    uuid: str | None = None
    serial: str | None = None
    cluster: str | None = None
    role: Role = Role.WORKER
    ip: str | None = None
    hostname: str | None = None
    state: MachineState = MachineState.REGISTERED
    desired: str = "none"
    pxe_allowed: bool = True
    boot_from_disk: bool = False
    labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)
