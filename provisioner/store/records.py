"""Plain, frozen records the store hands out (no ORM objects escape the store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provisioner.model import INSTALLED_STATES, MachineState, MachineSummary, Role

__all__ = ["BmcInfo", "ClusterRecord", "DiscoveredRecord", "EventRecord", "MachineRecord", "TokenRecord"]

_INSTALLED_STATE_VALUES = frozenset(s.value for s in INSTALLED_STATES)


@dataclass(frozen=True, slots=True)
class BmcInfo:
    """A BMC as shown to people: everything but the password."""

    driver: str
    address: str = ""
    port: int | None = None
    username: str = ""
    password_ref: str = ""
    has_password: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MachineRecord:
    """One machine with its NICs and BMC (password excluded)."""

    name: str
    macs: tuple[str, ...]
    cluster: str | None = None
    role: str = "worker"
    uuid: str | None = None
    serial: str | None = None
    ip: str | None = None
    hostname: str | None = None
    install_disk: str | None = None
    arch: str = "amd64"
    labels: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    state: str = MachineState.REGISTERED.value
    desired: str = "none"
    state_reason: str = ""
    state_since: datetime | None = None
    attempts: int = 0
    installed: bool = False
    owner: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    bmc: BmcInfo | None = None

    def summary(self) -> MachineSummary:
        """The hot-path view of this machine."""
        return MachineSummary(
            name=self.name,
            macs=self.macs,
            uuid=self.uuid,
            serial=self.serial,
            cluster=self.cluster,
            role=Role(self.role),
            ip=self.ip,
            hostname=self.hostname or self.name,
            state=MachineState(self.state),
            desired=self.desired,
            pxe_allowed=bool(self.spec.get("pxe", True)),
            # Installed and past the node's own "install finished" (lifecycle.INSTALLED_STATES).
            boot_from_disk=self.installed and self.state in _INSTALLED_STATE_VALUES,
            labels=tuple(sorted((str(k), str(v)) for k, v in self.labels.items())),
        )


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """A cluster as stored (secrets excluded; see `Store.get_cluster_secrets`)."""

    name: str
    talos_version: str
    kubernetes_version: str
    endpoint: str
    asset_set: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    has_secrets: bool = False


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One row of the audit log."""

    id: int
    at: datetime
    kind: str
    machine: str | None
    severity: str
    actor: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A config token row as the guard and the console see it (never the token itself)."""

    id: int
    machine: str
    issued_at: datetime
    expires_at: datetime
    issued_to: str
    used_at: datetime | None
    used_by: str
    revoked: bool
    code_hash: str = ""


@dataclass(frozen=True, slots=True)
class DiscoveredRecord:
    """A machine seen on the network that the inventory does not know."""

    mac: str
    uuid: str | None
    serial: str | None
    arch: str | None
    vendor_class: str
    source: str
    seen_count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class StoredBmc:
    """A machine's BMC as the inventory sees it: visible fields and the password ciphertext."""

    fields: dict[str, Any]
    """driver, address, port, username, password_ref, options."""
    password_enc: bytes | None = None


@dataclass(frozen=True, slots=True)
class InventorySnapshot:
    """The inventory part of the database, as plain values (read in one transaction).

    Cluster fields: `CLUSTER_COLUMNS` and `spec`; machine fields: `MACHINE_COLUMNS`,
    `spec` and `macs` (in NIC order). Lifecycle state is not part of the inventory.
    """

    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    bmcs: dict[str, StoredBmc] = field(default_factory=dict)


@dataclass
class InventoryWrite:
    """What an inventory apply writes, decided by the planner from a snapshot.

    Written in this order: clusters put; machines deleted; unique values (uuid, ip, NICs)
    of changed machines released; machines put with their NICs and `bmcs` (None deletes
    the BMC); clusters deleted; events appended. One transaction.
    """

    put_clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete_clusters: list[str] = field(default_factory=list)
    delete_machines: list[str] = field(default_factory=list)
    put_machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    bmcs: dict[str, StoredBmc | None] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    """`provisioner.events.Event` values."""
