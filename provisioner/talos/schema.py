"""Talos's published JSON schemas: finding a document's schema and Go's field order.

The schemas are vendored data files in ``schemas/``, copied verbatim from siderolabs/talos
``pkg/machinery/config/schemas/config.schema.json``, one per supported contract (1.10 to
1.15; tags in ``schemas/README.md``), so that validation needs nothing outside the package
at run time.  They list
each struct's properties in Go declaration order, which is the order Go's YAML encoder
writes them.  :func:`canonical_order` uses that to put any document (after a patch, say)
into the order ``talosctl`` would write; maps (schemas without ``properties``) get Go's
sorted key order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from provisioner.talos import goyaml
from provisioner.talos.contract import NEWEST, OLDEST, VersionContract

__all__ = ["HIDDEN_FIELDS", "KIND_ALIASES", "canonical_order", "document_schema", "load_schema"]

# The 1.14 schema misspells two kinds Talos emits (and lacks ImageVerificationConfig).
KIND_ALIASES = {
    "UnattendedInstallConfig": "UnattendedInstall",
    "KubeSpanEndpointsConfig": "KubeSpanEndpoints",
}
SCHEMALESS_KINDS = frozenset({"ImageVerificationConfig"})


def _schema_file(contract: VersionContract) -> str:
    # One schema per supported release (see schemas/README.md); a contract outside the
    # range uses the nearest one.
    nearest = min(max(contract, OLDEST), NEWEST)
    return f"config.schema.v{nearest}.json"


@cache
def _load(name: str) -> dict[str, Any]:
    text = resources.files("provisioner.talos").joinpath("schemas", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_schema(contract: VersionContract) -> dict[str, Any]:
    """The whole JSON schema (draft 2020-12) for the contract's release."""
    return _load(_schema_file(contract))


@cache
def _kinds(name: str) -> dict[str, str]:
    """Map ``kind`` (or ``v1alpha1`` for the main document) to its definition name."""
    kinds: dict[str, str] = {}
    for def_name, definition in _load(name)["$defs"].items():
        props = definition.get("properties", {})
        if "kind" in props and "enum" in props["kind"]:
            for kind in props["kind"]["enum"]:
                kinds[kind] = def_name
        elif "version" in props and def_name == "v1alpha1.Config":
            kinds["v1alpha1"] = def_name
    return kinds


def document_schema(doc: Mapping[str, Any], contract: VersionContract) -> tuple[str, dict[str, Any]] | None:
    """The definition name and schema of one document, or None when its kind is unknown."""
    name = _schema_file(contract)
    kind = doc.get("kind")
    key = "v1alpha1" if kind is None and "version" in doc else KIND_ALIASES.get(str(kind), str(kind))
    kinds = _kinds(name)
    if key not in kinds and isinstance(kind, str) and kind in kinds:
        key = kind
    def_name = kinds.get(key)
    if def_name is None:
        return None
    schema: dict[str, Any] = _load(name)["$defs"][def_name]
    return def_name, schema


# Deprecated fields Talos still accepts (and partly still writes) but no longer lists in
# its schema: (definition, field, the field it follows in the Go struct).  Listed in an
# order where each "follows" field comes before the fields that follow it.
HIDDEN_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("v1alpha1.Config", "persist", "debug"),
    ("v1alpha1.MachineConfig", "network", "pods"),
    ("v1alpha1.MachineConfig", "disks", "network"),
    ("v1alpha1.MachineConfig", "env", "files"),
    ("v1alpha1.MachineConfig", "time", "env"),
    ("v1alpha1.MachineConfig", "registries", "sysfs"),
    ("v1alpha1.MachineConfig", "systemDiskEncryption", "registries"),
    ("v1alpha1.ClusterConfig", "allowSchedulingOnMasters", "adminKubeconfig"),
    ("v1alpha1.InstallConfig", "extraKernelArgs", "diskSelector"),
    ("v1alpha1.InstallConfig", "extensions", "image"),
    ("v1alpha1.InstallConfig", "bootloader", "extensions"),
    ("v1alpha1.FeaturesConfig", "rbac", ""),
    ("v1alpha1.FeaturesConfig", "stableHostname", "rbac"),
    ("v1alpha1.FeaturesConfig", "apidCheckExtKeyUsage", "kubernetesTalosAPIAccess"),
)


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    name = ""
    while "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        node = defs[name]
    return name, node


def _pick_object_schema(
    node: Mapping[str, Any],
    value: Mapping[str, Any],
    defs: Mapping[str, Any],
) -> tuple[str, Mapping[str, Any]]:
    name, node = _resolve(node, defs)
    for alternative in node.get("oneOf", []) + node.get("anyOf", []):
        alt_name, candidate = _resolve(alternative, defs)
        if "properties" in candidate and set(value) <= set(candidate["properties"]):
            return alt_name, candidate
    return name, node


def _field_order(def_name: str, props: Mapping[str, Any], value: Mapping[str, Any]) -> list[str]:
    order = list(props)
    for owner, hidden, after in HIDDEN_FIELDS:
        # Older schemas still list some of these fields in place.
        if owner == def_name and hidden not in order:
            order.insert(order.index(after) + 1 if after in order else 0, hidden)
    known = [key for key in order if key in value]
    return known + [key for key in value if key not in order]


def _order(value: Any, node: Mapping[str, Any] | None, defs: Mapping[str, Any], name: str = "") -> Any:  # noqa: ANN401
    if isinstance(value, Mapping):
        def_name, schema = _pick_object_schema(node, value, defs) if node is not None else ("", None)
        def_name = def_name or name
        props = schema.get("properties") if schema is not None else None
        if props:
            return {
                key: _order(value[key], props.get(key), defs) for key in _field_order(def_name, props, value)
            }
        child = None
        if schema is not None:
            patterns = schema.get("patternProperties", {})
            child = next(iter(patterns.values()), None) or schema.get("additionalProperties")
            child = child if isinstance(child, Mapping) else None
        return {key: _order(item, child, defs) for key, item in goyaml.go_sorted(value).items()}
    if isinstance(value, list):
        items = _resolve(node, defs)[1].get("items") if node is not None else None
        return [_order(item, items if isinstance(items, Mapping) else None, defs) for item in value]
    wants_string = node is not None and _resolve(node, defs)[1].get("type") == "string"
    if wants_string and isinstance(value, bool | int | float):
        # Go decodes any scalar into a string field as its text ("sysctls: {a: 1}" -> "1").
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value


def canonical_order(doc: Mapping[str, Any], contract: VersionContract) -> dict[str, Any]:
    """Reorder a document's keys the way Go's encoder writes the matching Talos struct."""
    found = document_schema(doc, contract)
    defs = load_schema(contract)["$defs"]
    if found is None:
        # Unknown kinds keep their order (Talos would reject them; validation reports it).
        return dict(doc)
    ordered: dict[str, Any] = _order(doc, found[1], defs, found[0])
    return ordered
