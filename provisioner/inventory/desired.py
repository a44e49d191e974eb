"""Flatten validated inventory documents into the field sets the database stores.

Both the diff (sync.py) and the export (export.py) go through these functions, so what
`apply` writes and what `export` reads back are the same shape by construction.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.inventory.schema import BmcSpec, ClusterSpec, MachineSpec
from provisioner.store.crypto import SecretBox, SecretError
from provisioner.store.repository import bmc_context

__all__ = [
    "CLUSTER_COLUMNS",
    "MACHINE_COLUMNS",
    "DesiredBmc",
    "PasswordError",
    "cluster_fields",
    "machine_fields",
    "resolve_password",
]

MACHINE_COLUMNS = ("cluster", "role", "uuid", "serial", "ip", "hostname", "install_disk", "arch", "labels")
_MACHINE_ALIASES = {"install_disk": "installDisk"}
CLUSTER_COLUMNS = ("talos_version", "kubernetes_version", "endpoint", "asset_set")
_CLUSTER_ALIASES = {
    "talos_version": "talosVersion",
    "kubernetes_version": "kubernetesVersion",
    "asset_set": "assetSet",
}


class PasswordError(Exception):
    """A BMC password reference cannot be resolved."""


@dataclass(frozen=True, slots=True)
class DesiredBmc:
    """A BMC as it should be stored; `password` is plaintext held only in memory."""

    driver: str
    address: str
    port: int | None
    username: str
    password_ref: str
    password: str | None
    options: dict[str, Any]

    def visible(self) -> dict[str, Any]:
        """The fields that may be shown in a diff (never the password)."""
        return {
            "driver": self.driver,
            "address": self.address,
            "port": self.port,
            "username": self.username,
            "password_ref": self.password_ref,
            "options": self.options,
        }

    def __repr__(self) -> str:
        return f"DesiredBmc(driver={self.driver!r}, address={self.address!r}, password=***)"


def resolve_password(
    raw: str, machine: str, box: SecretBox, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """(reference, plaintext) for a password field: env:NAME, file:PATH, enc:BLOB or inline."""
    env = os.environ if environ is None else environ
    if not raw:
        return "", None
    if raw.startswith("env:"):
        name = raw[4:]
        if name not in env:
            msg = f"bmc.password: environment variable {name} is not set"
            raise PasswordError(msg)
        return raw, env[name]
    if raw.startswith("file:"):
        try:
            return raw, Path(raw[5:]).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            msg = f"bmc.password: cannot read {raw[5:]}: {exc.strerror}"
            raise PasswordError(msg) from None
    if raw.startswith("enc:"):
        try:
            return "inline", box.open_text(base64.b64decode(raw[4:], validate=True), bmc_context(machine))
        except (binascii.Error, SecretError) as exc:
            msg = f"bmc.password: cannot decrypt enc: value ({exc}); was it exported with another key?"
            raise PasswordError(msg) from None
    return "inline", raw


def bmc_fields(bmc: BmcSpec | None, machine: str, box: SecretBox) -> DesiredBmc | None:
    """The BMC as stored, resolving its password now."""
    if bmc is None:
        return None
    ref, password = resolve_password(bmc.password, machine, box)
    return DesiredBmc(
        driver=bmc.driver,
        address=bmc.address,
        port=bmc.port,
        username=bmc.username,
        password_ref=ref,
        password=password,
        options=dict(bmc.options),
    )


def machine_fields(spec: MachineSpec) -> dict[str, Any]:
    """Column values plus `spec` (the remaining non-default fields, by their YAML names)."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    columns: dict[str, Any] = {
        "cluster": spec.cluster,
        "role": spec.role.value,
        "uuid": spec.uuid,
        "serial": spec.serial,
        "ip": str(spec.ip) if spec.ip is not None else None,
        "hostname": spec.hostname,
        "install_disk": spec.install_disk,
        "arch": spec.arch,
        "labels": dict(spec.labels),
    }
    skip = {"kind", "name", "macs", "bmc", *(_MACHINE_ALIASES.get(c, c) for c in MACHINE_COLUMNS)}
    columns["spec"] = {k: v for k, v in dumped.items() if k not in skip}
    columns["macs"] = list(spec.macs)
    return columns


def cluster_fields(spec: ClusterSpec) -> dict[str, Any]:
    """Column values plus `spec` for a cluster."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    columns: dict[str, Any] = {
        "talos_version": spec.talos_version,
        "kubernetes_version": spec.kubernetes_version,
        "endpoint": spec.endpoint,
        "asset_set": spec.asset_set,
    }
    skip = {"kind", "name", *(_CLUSTER_ALIASES.get(c, c) for c in CLUSTER_COLUMNS)}
    columns["spec"] = {k: v for k, v in dumped.items() if k not in skip}
    return columns


def machine_document(name: str, fields: Mapping[str, Any], bmc: dict[str, Any] | None) -> dict[str, Any]:
    """The inventory YAML document for a stored machine (export)."""
    doc: dict[str, Any] = {"kind": "Machine", "name": name}
    for column in MACHINE_COLUMNS:
        value = fields.get(column)
        if (
            value in (None, {}, "")
            or (column == "role" and value == "worker")
            or (column == "arch" and value == "amd64")
        ):
            continue
        doc[_MACHINE_ALIASES.get(column, column)] = value
    doc["macs"] = list(fields.get("macs", []))
    doc.update(fields.get("spec", {}))
    if bmc is not None:
        doc["bmc"] = {k: v for k, v in bmc.items() if v not in (None, "", {})}
    return doc


def cluster_document(name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The inventory YAML document for a stored cluster (export)."""
    doc: dict[str, Any] = {"kind": "Cluster", "name": name}
    for column in CLUSTER_COLUMNS:
        value = fields.get(column)
        if value is not None:
            doc[_CLUSTER_ALIASES.get(column, column)] = value
    doc.update(fields.get("spec", {}))
    return doc


def encode_inline(blob: bytes) -> str:
    """The `enc:` form of a stored inline password (export never prints plaintext)."""
    return "enc:" + base64.b64encode(blob).decode()
