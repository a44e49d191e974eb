"""Read inventory files (YAML documents and CSV machine lists) keeping file:line for every value.

YAML is composed node by node with PyYAML so that each mapping remembers the line of each
of its keys; a validation error deep in a document can then be reported as
`racks/r1.yaml:42: macs.0: not a MAC address`. CSV rows become Machine documents whose
line is the row's line in the file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["InventoryFileError", "LinedDict", "LinedList", "RawDocument", "line_of", "load_paths"]

YAML_SUFFIXES = (".yaml", ".yml")
CSV_SUFFIX = ".csv"


class InventoryFileError(Exception):
    """A file cannot be read or parsed at all (message is `file:line: ...`)."""


class LinedDict(dict[str, Any]):
    """A mapping that remembers the (1-based) line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines = {}


class LinedList(list[Any]):
    """A sequence that remembers the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines = []


@dataclass(frozen=True, slots=True)
class RawDocument:
    """One inventory document before validation."""

    file: str
    line: int
    data: LinedDict


def _convert(node: yaml.Node, file: str) -> Any:  # noqa: ANN401 - YAML values are Any
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = LinedDict(line)
        for key_node, value_node in node.value:
            key = _convert(key_node, file)
            if not isinstance(key, str):
                msg = f"{file}:{key_node.start_mark.line + 1}: mapping keys must be strings"
                raise InventoryFileError(msg)
            if key in out:
                msg = f"{file}:{key_node.start_mark.line + 1}: duplicate key {key!r}"
                raise InventoryFileError(msg)
            out[key] = _convert(value_node, file)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LinedList(line)
        for item in node.value:
            seq.append(_convert(item, file))
            seq.item_lines.append(item.start_mark.line + 1)
        return seq
    # Scalars: let the safe constructor decide the type (int, bool, str, null, ...).
    # MACs like 52:54:00:77:00:10 are sexagesimal ints in YAML 1.1; keep them strings.
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int" and ":" in node.value:
        return node.value
    return yaml.SafeLoader(io.StringIO("")).construct_object(node, deep=True)


def _load_yaml(path: Path) -> list[RawDocument]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        nodes: list[yaml.Node | None] = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        msg = f"{file}:{line}: YAML syntax error: {exc.problem or exc}"
        raise InventoryFileError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{file}:0: cannot read: {exc}"
        raise InventoryFileError(msg) from None
    docs: list[RawDocument] = []
    for node in nodes:
        if node is None:
            continue
        data = _convert(node, file)
        if not isinstance(data, LinedDict):
            msg = f"{file}:{node.start_mark.line + 1}: a document must be a mapping with a `kind`"
            raise InventoryFileError(msg)
        docs.append(RawDocument(file=file, line=data.line, data=data))
    return docs


_CSV_LIST_FIELDS = {"macs"}
_CSV_BMC_PREFIX = "bmc_"


def _csv_document(row: dict[str | None, Any], file: str, line: int) -> RawDocument:
    # csv.DictReader puts surplus cells under the key None.
    data = LinedDict(line)
    bmc = LinedDict(line)
    for column, raw in row.items():
        if column is None:
            msg = f"{file}:{line}: more cells than header columns"
            raise InventoryFileError(msg)
        key = column.strip()
        value = (raw or "").strip()
        if not key or not value:
            continue
        if key.startswith(_CSV_BMC_PREFIX):
            bmc[key[len(_CSV_BMC_PREFIX) :]] = value
            bmc.key_lines[key[len(_CSV_BMC_PREFIX) :]] = line
            continue
        parsed: Any = value
        if key in _CSV_LIST_FIELDS:
            parsed = LinedList(line)
            for part in value.replace(";", " ").replace(",", " ").split():
                parsed.append(part)
                parsed.item_lines.append(line)
        elif key == "labels":
            parsed = LinedDict(line)
            for pair in value.split(";"):
                k, sep, v = pair.partition("=")
                if not sep:
                    msg = f"{file}:{line}: labels must be key=value;key=value"
                    raise InventoryFileError(msg)
                parsed[k.strip()] = v.strip()
                parsed.key_lines[k.strip()] = line
        data[key] = parsed
        data.key_lines[key] = line
    data.setdefault("kind", "Machine")
    if bmc:
        data["bmc"] = bmc
        data.key_lines["bmc"] = line
    return RawDocument(file=file, line=line, data=data)


def _load_csv(path: Path) -> list[RawDocument]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{file}:0: cannot read: {exc}"
        raise InventoryFileError(msg) from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    numbers = [
        i + 1 for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        return []
    reader = csv.DictReader(lines)
    docs = []
    for index, row in enumerate(reader, start=1):
        docs.append(_csv_document(row, file, numbers[index] if index < len(numbers) else 0))
    return docs


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (*YAML_SUFFIXES, CSV_SUFFIX))
            )
        elif path.exists():
            found.append(path)
        else:
            msg = f"{path}:0: no such file or directory"
            raise InventoryFileError(msg)
    return found


def load_paths(paths: list[Path]) -> tuple[list[RawDocument], list[str]]:
    """Every document in `paths` (files or folders), and the per-file errors found."""
    docs: list[RawDocument] = []
    errors: list[str] = []
    try:
        files = _files(paths)
    except InventoryFileError as exc:
        return [], [str(exc)]
    for path in files:
        try:
            docs.extend(_load_csv(path) if path.suffix == CSV_SUFFIX else _load_yaml(path))
        except InventoryFileError as exc:
            errors.append(str(exc))
    return docs, errors


def line_of(data: LinedDict, loc: tuple[int | str, ...]) -> int:
    """The line of the value at `loc` inside `data` (the deepest known line)."""
    line = data.line
    node: Any = data
    for part in loc:
        if isinstance(node, LinedDict) and isinstance(part, str) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, LinedList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line
