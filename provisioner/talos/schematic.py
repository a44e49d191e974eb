"""Image Factory schematics: parse, validate, marshal canonically, compute the ID.

The Image Factory (siderolabs/image-factory ``pkg/schematic/schematic.go``, v1.5.0)
decodes a schematic into its ``Schematic`` struct with unknown fields refused, and the
schematic ID is the sha256 of ``yaml.Marshal`` of that struct: Go's YAML encoder,
4-space indentation, struct fields in declaration order, ``omitempty`` fields left out
when empty, ``customization`` always present.  So a comment, other indentation, key
order or an empty list in the file do not change the ID, and hashing the file's bytes
(what an earlier version did) gives IDs the factory does not know.  Re-implemented from
the struct definitions; the encoding is :mod:`provisioner.talos.goyaml`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from provisioner.talos import goyaml
from provisioner.talos.yamlload import YAMLLoadError, go_loader, load_all

__all__ = ["Schematic", "SchematicError", "parse_schematic", "schematic_id_of"]

BOOTLOADERS = ("none", "dual-boot", "sd-boot", "grub")
_UINT8_MAX = 255


class SchematicError(ValueError):
    """A schematic the Image Factory would refuse; the message starts with ``file:line``."""


@dataclass(frozen=True, slots=True)
class Schematic:
    """A parsed schematic: its canonical encoding and ID."""

    canonical: str

    @property
    def id(self) -> str:
        """The Image Factory schematic ID (sha256 of the canonical encoding)."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()


class _InvalidError(Exception):
    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


Path = tuple[str | int, ...]
Field = tuple[str, Callable[[Any, Path], Any]]


def _string(value: Any, path: Path) -> str:  # noqa: ANN401 - YAML values are untyped
    # Go's decoder reads any scalar into a string field as its text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    raise _InvalidError(path, "expected a string")


def _bool(value: Any, path: Path) -> bool:  # noqa: ANN401
    if value is None or isinstance(value, bool):
        return bool(value)
    raise _InvalidError(path, "expected true or false")


def _uint(value: Any, path: Path, limit: int | None = None) -> int:  # noqa: ANN401
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (limit and value > limit):
        raise _InvalidError(
            path, f"expected an integer 0..{limit}" if limit else "expected a non-negative integer"
        )
    return value


def _strings(value: Any, path: Path) -> list[str]:  # noqa: ANN401
    if value is None:
        return []
    if not isinstance(value, list):
        raise _InvalidError(path, "expected a list")
    return [_string(item, (*path, index)) for index, item in enumerate(value)]


def _struct(
    fields: tuple[Field, ...], *, keep: tuple[str, ...] = ()
) -> Callable[[Any, Path], dict[str, Any]]:
    """A Go struct: known keys only, declaration order, empty omitempty fields dropped."""
    names = [name for name, _ in fields]

    def parse(value: Any, path: Path) -> dict[str, Any]:  # noqa: ANN401
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise _InvalidError(path, "expected a mapping")
        for key in value:
            if key not in names:
                raise _InvalidError((*path, str(key)), f"unknown key {key!r} (known: {', '.join(names)})")
        out: dict[str, Any] = {}
        for name, convert in fields:
            converted = convert(value.get(name), (*path, name))
            if name in keep or converted not in ("", 0, False, [], {}, None):
                out[name] = converted
        return out

    return parse


def _meta(value: Any, path: Path) -> list[dict[str, Any]]:  # noqa: ANN401
    if value is None:
        return []
    if not isinstance(value, list):
        raise _InvalidError(path, "expected a list")
    item = _struct((("key", lambda v, p: _uint(v, p, _UINT8_MAX)), ("value", _string)), keep=("key", "value"))
    return [item(entry, (*path, index)) for index, entry in enumerate(value)]


def _bootloader(value: Any, path: Path) -> str:  # noqa: ANN401
    text = _string(value, path)
    if text and text not in BOOTLOADERS:
        raise _InvalidError(path, f"unknown bootloader {text!r} (one of {', '.join(BOOTLOADERS)})")
    # BootLoaderKindNone is the zero value: omitted like an unset field.
    return "" if text == "none" else text


def _options(value: Any, path: Path) -> dict[str, Any]:  # noqa: ANN401
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _InvalidError(path, "expected a mapping")
    return goyaml.go_sorted({str(k): v for k, v in value.items()})


_CUSTOMIZATION = _struct(
    (
        ("embeddedMachineConfiguration", _string),
        ("extraKernelArgs", _strings),
        ("meta", _meta),
        ("systemExtensions", _struct((("officialExtensions", _strings),))),
        ("bootloader", _bootloader),
        ("secureboot", _struct((("enrollKeys", _string), ("includeWellKnownCertificates", _bool)))),
        ("diskImage", _struct((("sectorSize", _uint),))),
    )
)
_OVERLAY_FIELDS: tuple[Field, ...] = (("image", _string), ("name", _string), ("options", _options))


def _overlay(value: Any, path: Path) -> dict[str, Any]:  # noqa: ANN401
    parsed = _struct(_OVERLAY_FIELDS)(value, path)
    # image and name are not omitempty: present whenever the overlay is.
    return {"image": parsed.get("image", ""), "name": parsed.get("name", ""), **parsed} if parsed else {}


_SCHEMATIC = _struct(
    (("owner", _string), ("overlay", _overlay), ("customization", _CUSTOMIZATION)), keep=("customization",)
)


def _line(text: str, path: Path) -> int:
    """The 1-based line of the deepest node of ``path`` found in the document."""
    try:
        node = yaml.compose(text, Loader=go_loader())
    except yaml.YAMLError:
        return 1
    line = 1 if node is None else node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == part), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_schematic(text: str, source: str = "schematic") -> Schematic:
    """Parse and validate a schematic as the factory does; SchematicError names ``source:line``."""
    try:
        documents = load_all(text)
    except YAMLLoadError as exc:
        raise SchematicError(f"{source}: {exc}") from None
    if len(documents) > 1:
        raise SchematicError(f"{source}: one YAML document expected, found {len(documents)}")
    try:
        canonical = _SCHEMATIC(documents[0] if documents else None, ())
    except _InvalidError as fail:
        where = ".".join(str(p) for p in fail.path) or "(document)"
        raise SchematicError(f"{source}:{_line(text, fail.path)}: {where}: {fail.message}") from None
    return Schematic(goyaml.dump(canonical))


def schematic_id_of(text: str, source: str = "schematic") -> str:
    """The Image Factory ID of a schematic written as YAML (or JSON)."""
    return parse_schematic(text, source).id
