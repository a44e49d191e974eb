"""Config patches with ``talosctl --config-patch`` semantics.

Two kinds, told apart as ``talosctl`` does: a YAML/JSON list of ``{op, path, ...}``
operations is an RFC 6902 JSON patch, anything else is a (possibly multi-document)
strategic-merge patch.

Strategic merge, as Talos implements it on its config structs:

* documents are matched by ``apiVersion``/``kind``/``name`` (the main ``v1alpha1``
  document by ``version``); an unmatched patch document is appended;
* mappings merge key by key, scalars are replaced, lists are appended to, except the
  lists and free-form mappings Talos tags ``merge:"replace"`` (pod/service subnets, audit
  policy...) which are replaced, and lists Talos merges by a key (admission plugins by
  ``name``);
* ``$patch: delete`` deletes the mapping key (or the whole document) it appears in;
* ``null`` changes nothing (Go decodes it to a zero value, which merging ignores).

Deviation: Talos refuses JSON patches on multi-document configs; we apply them to the
``v1alpha1`` document, which is what an operator means by ``/machine/...`` paths.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jsonpatch

from provisioner.talos.yamlload import load_all

__all__ = ["ConfigPatch", "PatchError", "apply_patches"]

# (document id, dotted path) of fields Talos replaces instead of merging.
_REPLACE = frozenset(
    [
        ("v1alpha1", "cluster.network.podSubnets"),
        ("v1alpha1", "cluster.network.serviceSubnets"),
        ("v1alpha1", "cluster.apiServer.auditPolicy"),
        ("KubeNetworkConfig", "podSubnets"),
        ("KubeNetworkConfig", "serviceSubnets"),
        ("KubeAuditPolicyConfig", "configuration"),
        ("KubeAuthenticationConfig", "configuration"),
        ("KubeCredentialProviderConfig", "configuration"),
        ("KubeStaticPodConfig", "pod"),
        ("NetworkRuleConfig", "ingress"),
        ("NetworkRuleConfig", "portSelector.ports"),
    ],
)
_KEYED_LISTS = {("v1alpha1", "cluster.apiServer.admissionControl"): "name"}


class PatchError(ValueError):
    """A patch could not be parsed or applied."""


@dataclass(frozen=True, slots=True)
class ConfigPatch:
    """One parsed patch: strategic-merge documents or JSON patch operations."""

    kind: Literal["strategic", "json6902"]
    documents: tuple[dict[str, Any], ...] = ()
    operations: tuple[dict[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ConfigPatch:
        """Parse patch text (YAML or JSON) into a strategic-merge or RFC 6902 patch."""
        try:
            docs = load_all(text)
        except ValueError as exc:
            msg = f"patch is not valid YAML: {exc}"
            raise PatchError(msg) from exc
        if len(docs) == 1 and isinstance(docs[0], list):
            ops = docs[0]
            if not all(isinstance(op, Mapping) and "op" in op and "path" in op for op in ops):
                msg = "a list patch must be RFC 6902 operations with 'op' and 'path'"
                raise PatchError(msg)
            return cls("json6902", operations=tuple(dict(op) for op in ops))
        if not docs or not all(isinstance(doc, Mapping) for doc in docs):
            msg = "a strategic-merge patch must be one or more YAML mappings"
            raise PatchError(msg)
        return cls("strategic", documents=tuple(dict(doc) for doc in docs))


def _doc_id(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    if "kind" not in doc:
        return ("", "v1alpha1", "")
    return (str(doc.get("apiVersion", "")), str(doc["kind"]), str(doc.get("name", "")))


def _is_delete(value: object) -> bool:
    return isinstance(value, Mapping) and value.get("$patch") == "delete"


def _strip_directives(value: Any) -> Any:  # noqa: ANN401 - YAML values are untyped
    if isinstance(value, Mapping):
        return {k: _strip_directives(v) for k, v in value.items() if k != "$patch" and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _merge(left: Any, right: Any, doc_kind: str, path: str) -> Any:  # noqa: ANN401
    if right is None:
        return left
    if (doc_kind, path) in _REPLACE or left is None:
        return _strip_directives(right)
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        merged = dict(left)
        for key, value in right.items():
            if key == "$patch":
                continue
            if _is_delete(value):
                merged.pop(key, None)
                continue
            if value is None:
                # A null decodes to Go's zero value, which neither sets nor clears a field.
                continue
            child = f"{path}.{key}" if path else str(key)
            merged[key] = _merge(merged.get(key), value, doc_kind, child)
        return merged
    if isinstance(left, list) and isinstance(right, list):
        key_field = _KEYED_LISTS.get((doc_kind, path))
        if key_field is None:
            return [*left, *_strip_directives(right)]
        return _merge_keyed(left, right, key_field, doc_kind, path)
    return _strip_directives(right)


def _same_key(left: object, right: object, key_field: str) -> bool:
    if not isinstance(left, Mapping) or not isinstance(right, Mapping):
        return False
    return bool(left.get(key_field) == right.get(key_field))


def _merge_keyed(left: list[Any], right: list[Any], key_field: str, doc_kind: str, path: str) -> list[Any]:
    result = list(left)
    for item in right:
        index = next((i for i, existing in enumerate(result) if _same_key(existing, item, key_field)), None)
        if index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = _merge(result[index], item, doc_kind, f"{path}[]")
    return result


def _strategic(documents: list[dict[str, Any]], patch: ConfigPatch) -> list[dict[str, Any]]:
    for patch_doc in patch.documents:
        doc_id = _doc_id(patch_doc)
        index = next((i for i, doc in enumerate(documents) if _doc_id(doc) == doc_id), None)
        if _is_delete(patch_doc):
            if index is not None:
                del documents[index]
            continue
        if index is None:
            documents.append(_strip_directives(patch_doc))
        else:
            documents[index] = _merge(documents[index], patch_doc, doc_id[1], "")
    return documents


def _json6902(documents: list[dict[str, Any]], patch: ConfigPatch) -> list[dict[str, Any]]:
    index = next((i for i, doc in enumerate(documents) if "kind" not in doc), None)
    if index is None:
        msg = "JSON patches apply to the v1alpha1 document, and the config has none"
        raise PatchError(msg)
    try:
        documents[index] = jsonpatch.apply_patch(documents[index], list(patch.operations))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        msg = f"JSON patch failed: {exc}"
        raise PatchError(msg) from exc
    return documents


def apply_patches(
    documents: Sequence[Mapping[str, Any]], patches: Sequence[ConfigPatch]
) -> list[dict[str, Any]]:
    """Apply patches in order to a copy of ``documents``; the input is left untouched."""
    result: list[dict[str, Any]] = [copy.deepcopy(dict(doc)) for doc in documents]
    for patch in patches:
        result = _strategic(result, patch) if patch.kind == "strategic" else _json6902(result, patch)
    return result
