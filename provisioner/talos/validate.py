"""Validate a Talos machine config as Talos would, with clear ``path: message`` errors.

Two layers:

* JSON schema: each document against its own definition in the release's schema, with
  the known quirks (deprecated fields Talos still accepts, such as ``persist`` or
  ``machine.network``, are removed first, so their contents go unchecked; the 1.14
  schema's misspelled kinds are mapped; ``ImageVerificationConfig`` has no schema);
* rules the schema cannot express and Talos's Go validation checks (see
  :mod:`provisioner.talos.rules`): token formats, endpoint URL, install disk, PEM
  decoding, certificate/key pairs, secret lengths, which keys a worker may carry.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, Literal, Protocol

from provisioner.talos.contract import NEWEST, VersionContract
from provisioner.talos.rules import check_rules
from provisioner.talos.schema import (
    HIDDEN_FIELDS,
    KIND_ALIASES,
    SCHEMALESS_KINDS,
    document_schema,
    load_schema,
)
from provisioner.talos.talosrules import check_talos_rules
from provisioner.talos.yamlload import YAMLLoadError, load_all

__all__ = ["Mode", "detect_contract", "validate_config", "validate_documents"]

Mode = Literal["metal", "cloud", "container"]

# Where the structs owning schema.HIDDEN_FIELDS sit inside the v1alpha1 document.
_STRUCT_PATHS = {
    "v1alpha1.Config": (),
    "v1alpha1.MachineConfig": ("machine",),
    "v1alpha1.ClusterConfig": ("cluster",),
    "v1alpha1.InstallConfig": ("machine", "install"),
    "v1alpha1.FeaturesConfig": ("machine", "features"),
}
_SCHEMA_TYPE_ALIASES = {"init": "controlplane", "join": "worker"}
_V113_ONLY_CLUSTER_KEYS = ("id", "secret", "controlPlane", "clusterName", "network", "ca")


class _SchemaError(Protocol):
    path: Sequence[str | int]
    message: str


class _Validator(Protocol):
    def iter_errors(self, instance: object) -> Iterable[_SchemaError]: ...


@cache
def _validator(contract: VersionContract, def_name: str) -> _Validator:
    # Imported by name so that type checking does not depend on jsonschema's stub package;
    # the two attributes used are pinned by the protocols above.
    jsonschema: Any = importlib.import_module("jsonschema")
    schema = load_schema(contract)
    root = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{def_name}"}
    validator: _Validator = jsonschema.Draft202012Validator(root)
    return validator


def detect_contract(documents: list[Any]) -> VersionContract:
    """Guess the release a config was generated for from its shape."""
    for doc in documents:
        if isinstance(doc, Mapping) and "kind" not in doc and isinstance(doc.get("cluster"), Mapping):
            if any(key in doc["cluster"] for key in _V113_ONLY_CLUSTER_KEYS):
                # Fields Talos stopped writing after 1.11 (contract.go HideRBACAndKeyUsage,
                # HideDisablePSP) mark a 1.10/1.11 config; the 1.11 schema still lists them.
                features = doc.get("machine", {}).get("features") or {}
                api_server = doc["cluster"].get("apiServer") or {}
                newer = any(isinstance(d, Mapping) and d.get("kind") == "HostnameConfig" for d in documents)
                if not newer and ("rbac" in features or "disablePodSecurityPolicy" in api_server):
                    return VersionContract(1, 11)
                return VersionContract(1, 13)
            # A slim v1alpha1 document: contract 1.14 or later; the newest schema knows
            # every kind (1.14's configs validate against it too).
            return NEWEST
    return NEWEST


def _label(index: int, doc: Mapping[str, Any]) -> str:
    kind = doc.get("kind", "v1alpha1")
    name = doc.get("name")
    return f"doc[{index}] {kind}" + (f"/{name}" if name else "")


def _strip_hidden(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop deprecated fields the schema no longer lists (Talos still accepts them)."""
    for owner, hidden, _ in HIDDEN_FIELDS:
        node: Any = doc
        for part in _STRUCT_PATHS[owner]:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, dict):
            node.pop(hidden, None)
    return doc


def _json_path(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _schema_errors(index: int, doc: Mapping[str, Any], contract: VersionContract) -> list[str]:
    label = _label(index, doc)
    kind = doc.get("kind")
    if kind in SCHEMALESS_KINDS:
        return []
    found = document_schema(doc, contract)
    if found is None:
        what = (
            f"unknown document kind {kind!r}"
            if kind is not None
            else "document has neither 'kind' nor 'version'"
        )
        return [f"{label}: {what}"]
    checked = copy.deepcopy(dict(doc))
    if found[0] == "v1alpha1.Config":
        checked = _strip_hidden(checked)
        machine = checked.get("machine")
        if isinstance(machine, dict) and machine.get("type") in _SCHEMA_TYPE_ALIASES:
            # The schema lists controlplane/worker only; Talos's machine.ParseType also reads
            # "init" (the bootstrap control plane) and "join" (a worker), so they are checked
            # as their schema equivalents.
            machine["type"] = _SCHEMA_TYPE_ALIASES[machine["type"]]
    if isinstance(kind, str) and kind in KIND_ALIASES:
        checked["kind"] = KIND_ALIASES[kind]
    errors = sorted(_validator(contract, found[0]).iter_errors(checked), key=lambda e: list(map(str, e.path)))
    return [f"{label}: {_json_path(list(error.path))}: {error.message}" for error in errors]


def validate_documents(
    documents: list[Any], contract: VersionContract | None = None, mode: Mode = "metal"
) -> list[str]:
    """Validate parsed documents; returns human-readable errors (empty when valid)."""
    errors: list[str] = []
    mappings: list[Mapping[str, Any]] = []
    for index, doc in enumerate(documents):
        if not isinstance(doc, Mapping):
            errors.append(f"doc[{index}]: a config document must be a mapping")
            continue
        mappings.append(doc)
    contract = contract or detect_contract(list(mappings))
    if not any("kind" not in doc for doc in mappings):
        errors.append("config: the v1alpha1 document (version: v1alpha1) is missing")
    for index, doc in enumerate(mappings):
        errors += _schema_errors(index, doc, contract)
    errors += check_talos_rules(mappings, mode)
    errors += check_rules(mappings, require_install_disk=mode == "metal")
    return errors


def validate_config(text: str, contract: VersionContract | None = None, mode: Mode = "metal") -> list[str]:
    """Validate machine-config YAML text; returns ``path: message`` errors (empty when valid)."""
    try:
        documents = load_all(text)
    except YAMLLoadError as exc:
        return [f"yaml: {exc}"]
    if not documents:
        return ["config: empty document"]
    return validate_documents(documents, contract, mode)
