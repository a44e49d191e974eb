"""Load YAML the way Talos (Go's YAML library, YAML 1.2 core schema) reads it.

PyYAML's SafeLoader follows YAML 1.1: ``no``, ``on`` and ``0755`` would become a boolean
and a decimal number where Talos sees the string ``no``, the string ``on`` and the octal
number 493.  Validating with the wrong types would accept configs Talos rejects (and the
reverse), so this loader resolves plain scalars with the same rules as the emitter in
:mod:`provisioner.talos.goyaml`, and rejects duplicate keys as Go does.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

__all__ = ["YAMLLoadError", "go_loader", "load_all"]

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^[-+]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
)


class YAMLLoadError(ValueError):
    """The text is not YAML Talos would accept (syntax error or duplicate key)."""


class _GoLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema resolution and duplicate-key detection."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                msg = f"line {key_node.start_mark.line + 1}: duplicate key {key!r}"
                raise ConstructorError(None, None, msg, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Start from no implicit resolvers at all (PyYAML's YAML 1.1 set is wrong for Talos).
_GoLoader.yaml_implicit_resolvers = {}


def _construct_int(loader: _GoLoader, node: ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    prefix = body[:2].lower()
    if prefix in {"0x", "0o", "0b"}:
        return sign * int(body[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
    if len(body) > 1 and body.startswith("0"):
        # Go reads a leading zero as an octal prefix.
        return sign * int(body, 8)
    return sign * int(body)


def _construct_float(loader: _GoLoader, node: ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).replace("_", "").lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


_GoLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_GoLoader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])
_GoLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_GoLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
# No timestamp resolver: Talos has no timestamp fields, so dates stay strings.
_GoLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_GoLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def go_loader() -> type[yaml.SafeLoader]:
    """The loader class, for callers that need nodes (``yaml.compose``) with Go's resolution."""
    return _GoLoader


def load_all(text: str) -> list[Any]:
    """Parse every document of a YAML stream; empty documents are dropped."""
    try:
        # _GoLoader only builds plain Python data (it is a SafeLoader subclass).
        documents = list(yaml.load_all(text, Loader=_GoLoader))
    except yaml.YAMLError as exc:
        raise YAMLLoadError(str(exc)) from exc
    return [doc for doc in documents if doc is not None]
