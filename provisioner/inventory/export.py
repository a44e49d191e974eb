"""Write the database back as inventory YAML that applies with no changes."""

from __future__ import annotations

from typing import Any

import yaml

from provisioner.inventory.desired import (
    CLUSTER_COLUMNS,
    MACHINE_COLUMNS,
    cluster_document,
    encode_inline,
    machine_document,
)
from provisioner.store.base import Store

__all__ = ["export_inventory"]


class _Dumper(yaml.SafeDumper):
    """Block style, and MAC-like strings quoted so YAML 1.1 readers keep them strings."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if ":" in value and not value.startswith(("http", "env:", "file:", "enc:")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


async def export_inventory(store: Store) -> str:
    """The whole inventory as one multi-document YAML text (clusters first, then machines).

    Inline BMC passwords are exported in their encrypted `enc:` form: export never prints
    a secret, and the file still applies with no changes on this database (same key).
    """
    docs: list[dict[str, Any]] = []
    snap = await store.inventory_snapshot()
    for name in sorted(snap.clusters):
        cfields = snap.clusters[name]
        docs.append(cluster_document(name, {c: cfields[c] for c in (*CLUSTER_COLUMNS, "spec")}))
    for name in sorted(snap.machines):
        fields: dict[str, Any] = {c: snap.machines[name][c] for c in (*MACHINE_COLUMNS, "spec", "macs")}
        bmc_doc = None
        if (bmc := snap.bmcs.get(name)) is not None:
            password = bmc.fields["password_ref"]
            if password == "inline" and bmc.password_enc is not None:  # noqa: S105 - a kind, not a password
                password = encode_inline(bmc.password_enc)
            bmc_doc = {
                "driver": bmc.fields["driver"],
                "address": bmc.fields["address"],
                "port": bmc.fields["port"],
                "username": bmc.fields["username"],
                "password": password,
                "options": dict(bmc.fields["options"]),
            }
        docs.append(machine_document(name, fields, bmc_doc))
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True)
