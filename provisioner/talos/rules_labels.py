"""Talos's node label, annotation and taint rules (``pkg/machinery/labels``), Talos's messages.

Used by ``Config.Validate`` for ``machine.nodeLabels``/``nodeAnnotations``/``nodeTaints``
and by ``KubeNodeConfigV1Alpha1.Validate`` (contract 1.14+) for its labels, annotations
and taints.  Talos joins several findings with go-multierror; we report them joined by
"; " after Talos's prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from provisioner.talos.rulehelpers import Doc, get, of_kind

__all__ = ["label_problems", "node_labels", "taint_problems"]

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(f"^{_DNS1123_LABEL}(\\.{_DNS1123_LABEL})*$")
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME = re.compile(f"^{_QUALIFIED_NAME}$")
_VALUE = re.compile(f"^({_QUALIFIED_NAME})?$")
_MAX_NAME, _MAX_SUBDOMAIN = 63, 253
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_RESERVED = ("talos.dev/owned-annotations", "talos.dev/owned-labels", "talos.dev/owned-taints")
_ANNOTATIONS_LIMIT = 256 * 1024


def _prefix(prefix: str) -> str | None:
    if not _DNS1123_SUBDOMAIN.match(prefix) or len(prefix) > _MAX_SUBDOMAIN:
        reason = (
            f"domain name length exceeds limit of 253: {prefix!r}"
            if len(prefix) > _MAX_SUBDOMAIN
            else f"domain doesn't match required format: {prefix!r}"
        )
        return f"prefix {prefix!r} is invalid: {reason}"
    return None


def _qualified_name(value: str) -> str | None:
    parts = value.split("/")
    name = parts[-1]
    problem = None
    if len(parts) > 2:
        problem = f"invalid format: too many slashes: {value!r}"
    elif len(parts) == 2:
        problem = _prefix(parts[0]) if parts[0] else f"prefix cannot be empty: {value!r}"
    if problem is None:
        if not name:
            problem = f"name cannot be empty: {value!r}"
        elif len(name) > _MAX_NAME:
            problem = f"name is too long: {value!r} (limit is 63)"
        elif not _NAME.match(name):
            problem = f"name {name!r} is invalid"
    return problem


def _label_value(value: str) -> str | None:
    if len(value) > _MAX_NAME:
        return f"label value length exceeds limit of 63: {value!r}"
    if not _VALUE.match(value):
        return f"label value {value!r} is invalid"
    return None


def label_problems(labels: Mapping[str, object]) -> list[str]:
    """labels.Validate: every key a qualified name, every value a label value."""
    found = []
    for key in sorted(labels):
        found += [e for e in (_qualified_name(key), _label_value(str(labels[key] or ""))) if e]
    return found


def _annotations(annotations: Mapping[str, object]) -> list[str]:
    found: list[str] = []
    size = 0
    for key in sorted(annotations):
        if error := _qualified_name(key):
            found.append(error)
        if key in _RESERVED:
            found.append(f"annotation {key!r} is reserved")
        size += len(key) + len(str(annotations[key] or ""))
    if size > _ANNOTATIONS_LIMIT:
        found.append(f"total annotation size exceeds limit of {_ANNOTATIONS_LIMIT} bytes")
    return found


def taint_problems(taints: Mapping[str, object]) -> list[str]:
    """labels.ValidateTaints: key: ``value:effect`` or ``effect``."""
    found = []
    for key in sorted(taints):
        if error := _qualified_name(key):
            found.append(error)
            continue
        value, colon, effect = str(taints[key] or "").partition(":")
        if not colon:
            effect = value
        if effect not in _EFFECTS:
            found.append(f"invalid taint effect: {effect!r}")
        elif colon and (error := _label_value(value)):
            found.append(error)
    return found


def _report(section: str, what: str, errors: list[str]) -> Iterator[str]:
    if errors:
        yield f"{section}: invalid {what}: {'; '.join(errors)}"


def node_labels(main: Doc, docs: list[Doc], _mode: str) -> Iterator[str]:
    """labels.Validate/ValidateAnnotations/ValidateTaints on v1alpha1 and KubeNodeConfig."""
    machine = get(main, "machine") or {}
    for field, what, check in (
        ("nodeLabels", "machine node labels", label_problems),
        ("nodeAnnotations", "machine node annotations", _annotations),
        ("nodeTaints", "machine node taints", taint_problems),
    ):
        if isinstance(value := machine.get(field), Mapping):
            yield from _report(f"machine.{field}", what, check(value))
    for doc in of_kind(docs, "KubeNodeConfig"):
        for field, what, check in (
            ("labels", "node labels", label_problems),
            ("annotations", "node annotations", _annotations),
            ("taints", "node taints", taint_problems),
        ):
            if isinstance(value := doc.get(field), Mapping):
                yield from _report("KubeNodeConfig", what, check(value))
