"""The database schema (sqlmodel tables). Migrations in `provisioner/store/migrations/`.

Conventions:
- Times are timezone-aware UTC (`DateTime(timezone=True)`).
- Secrets (BMC passwords, cluster bundles) are stored only as ciphertext produced by
  `provisioner.store.crypto.SecretBox`; columns holding them end in `_enc`.
- Free-form inventory fields live in JSON columns (`labels`, `spec`) so the inventory can
  grow without a migration for every optional Talos knob.
- Uniqueness that decides correctness is a database constraint, not application luck:
  one lease row per IP, one machine per MAC, per name, per UUID.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from provisioner.events import Event

__all__ = [
    "AssetSetRow",
    "BmcRow",
    "ClusterRow",
    "ConfigTokenRow",
    "DiscoveredRow",
    "EventRow",
    "LeaseRow",
    "MachineRow",
    "NicRow",
    "WindowHoldRow",
    "event_row",
]


def _ts(*, nullable: bool = False, index: bool = False) -> Any:  # noqa: ANN401 - sqlmodel Field
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


def _json() -> Any:  # noqa: ANN401 - sqlmodel Field
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ClusterRow(SQLModel, table=True):
    """A Talos cluster as the inventory describes it, plus its encrypted secrets bundle."""

    __tablename__ = "cluster"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=63)
    talos_version: str
    kubernetes_version: str
    endpoint: str
    asset_set: str | None = None
    spec: dict[str, Any] = _json()
    secrets_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class MachineRow(SQLModel, table=True):
    """One server from the inventory, with its lifecycle state."""

    __tablename__ = "machine"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=253)
    cluster: str | None = Field(default=None, index=True)
    role: str = "worker"
    uuid: str | None = Field(default=None, unique=True, index=True)
    serial: str | None = None
    ip: str | None = Field(default=None, unique=True)
    hostname: str | None = None
    install_disk: str | None = None
    arch: str = "amd64"
    labels: dict[str, Any] = _json()
    spec: dict[str, Any] = _json()
    """Further inventory fields (taints, sysctls, patches, kernel args, boot choice, ...)."""
    state: str = Field(default="Registered", index=True)
    desired: str = "none"
    """What the operator asked for: none | provisioned | deprovisioned."""
    state_reason: str = ""
    state_since: datetime = _ts()
    attempts: int = 0
    installed: bool = False
    """Set once the machine proved it installed (trusted); gates "boot from disk"."""
    owner: str | None = None
    """Which daemon instance drives this machine's run (several may share the database)."""
    first_seen: datetime | None = _ts(nullable=True)
    last_seen: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class NicRow(SQLModel, table=True):
    """A network interface of a machine; the MAC is unique across the whole inventory."""

    __tablename__ = "nic"

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", index=True, ondelete="CASCADE")
    mac: str = Field(unique=True, index=True, max_length=17)
    position: int = 0


class BmcRow(SQLModel, table=True):
    """How to reach a machine's BMC. The password is only stored encrypted."""

    __tablename__ = "bmc"

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", unique=True, ondelete="CASCADE")
    driver: str
    address: str = ""
    port: int | None = None
    username: str = ""
    password_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    password_ref: str = ""
    """Where the password came from (`env:NAME`, `file:PATH`, `inline`), for export."""
    options: dict[str, Any] = _json()


class LeaseRow(SQLModel, table=True):
    """A DHCP lease. One row per address, enforced by the database (scale-out safety)."""

    __tablename__ = "lease"
    __table_args__ = (UniqueConstraint("ip", name="uq_lease_ip"),)

    id: int | None = Field(default=None, primary_key=True)
    ip: str = Field(max_length=15)
    mac: str = Field(index=True, max_length=17)
    client_id: str = Field(default="", max_length=512)
    hostname: str = Field(default="", max_length=255)
    state: str = "bound"
    """offered | bound | released | declined | expired."""
    expires_at: datetime = _ts(index=True)
    machine: str | None = None
    instance: str = ""
    updated_at: datetime = _ts(index=True)
    """Indexed: instances sharing a database fold in each other's recent writes by it."""


class DiscoveredRow(SQLModel, table=True):
    """A machine that asked to boot but is not in the inventory."""

    __tablename__ = "discovered"

    id: int | None = Field(default=None, primary_key=True)
    mac: str = Field(unique=True, index=True, max_length=17)
    uuid: str | None = None
    serial: str | None = None
    arch: str | None = None
    vendor_class: str = ""
    source: str = ""
    """Which subsystem saw it (dhcp, http)."""
    seen_count: int = 1
    first_seen: datetime = _ts()
    last_seen: datetime = _ts()


class WindowHoldRow(SQLModel, table=True):
    """A machine's provisioning window frozen by a spoofing alert; the operator releases it.

    Two addresses asked for one machine's config token in one window (proxy or relay mode):
    one of them is not the machine. No token is issued while the row exists.
    """

    __tablename__ = "window_hold"

    id: int | None = Field(default=None, primary_key=True)
    machine: str = Field(unique=True, index=True, max_length=253)
    frozen_at: datetime = _ts()
    first: str = Field(default="", max_length=64)
    """The address that held the window (fetched the live token)."""
    second: str = Field(default="", max_length=64)
    """The address that asked after it."""


class ConfigTokenRow(SQLModel, table=True):
    """A one-time token that lets one machine fetch its config once. Only its hash is kept."""

    __tablename__ = "config_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    machine: str = Field(index=True)
    issued_at: datetime = _ts()
    expires_at: datetime = _ts()
    issued_to: str = ""
    """Source address that fetched the iPXE script carrying the token."""
    used_at: datetime | None = _ts(nullable=True)
    used_by: str = ""
    revoked: bool = False


class AssetSetRow(SQLModel, table=True):
    """A named kernel + initramfs (+ default cmdline) set under state_dir/assets."""

    __tablename__ = "asset_set"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=100)
    arch: str = "amd64"
    kernel: str
    kernel_sha256: str
    kernel_size: int = 0
    initramfs: str
    initramfs_sha256: str
    initramfs_size: int = 0
    cmdline: str = ""
    source: dict[str, Any] = _json()
    created_at: datetime = _ts()


class EventRow(SQLModel, table=True):
    """The append-only audit log. Rows are inserted, never updated; only retention deletes them."""

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    kind: str = Field(index=True, max_length=64)
    machine: str | None = Field(default=None, index=True)
    severity: str = "info"
    actor: str = "system"
    message: str = ""
    data: dict[str, Any] = _json()


def event_row(event: Event) -> EventRow:
    """The table row for an event."""
    return EventRow(
        at=event.at,
        kind=event.kind,
        machine=event.machine,
        severity=event.severity.value,
        actor=event.actor,
        message=event.message,
        data=dict(event.data),
    )
