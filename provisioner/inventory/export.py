"""Write the database back as inventory YAML that applies with no changes."""

from __future__ import annotations

from typing import Any

import yaml
from sqlalchemy import select
from sqlmodel import col

from provisioner.inventory.desired import (
    CLUSTER_COLUMNS,
    MACHINE_COLUMNS,
    cluster_document,
    encode_inline,
    machine_document,
)
from provisioner.store.repository import Store
from provisioner.store.tables import BmcRow, ClusterRow, MachineRow, NicRow

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
    async with store.session() as session:
        for crow in (await session.execute(select(ClusterRow).order_by(col(ClusterRow.name)))).scalars():
            cfields = {c: getattr(crow, c) for c in CLUSTER_COLUMNS} | {"spec": dict(crow.spec)}
            docs.append(cluster_document(crow.name, cfields))
        nics: dict[int, list[str]] = {}
        for nic in (await session.execute(select(NicRow).order_by(col(NicRow.position)))).scalars():
            nics.setdefault(nic.machine_id, []).append(nic.mac)
        bmcs = {b.machine_id: b for b in (await session.execute(select(BmcRow))).scalars()}
        for row in (await session.execute(select(MachineRow).order_by(col(MachineRow.name)))).scalars():
            fields: dict[str, Any] = {c: getattr(row, c) for c in MACHINE_COLUMNS}
            fields["spec"] = dict(row.spec)
            fields["macs"] = nics.get(row.id or 0, [])
            bmc_doc = None
            if (bmc := bmcs.get(row.id or 0)) is not None:
                password = bmc.password_ref
                if bmc.password_ref == "inline" and bmc.password_enc is not None:  # noqa: S105 - a kind, not a password
                    password = encode_inline(bmc.password_enc)
                bmc_doc = {
                    "driver": bmc.driver,
                    "address": bmc.address,
                    "port": bmc.port,
                    "username": bmc.username,
                    "password": password,
                    "options": dict(bmc.options),
                }
            docs.append(machine_document(row.name, fields, bmc_doc))
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True)
