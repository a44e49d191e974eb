"""A small deterministic YAML emitter that writes exactly what Go's YAML library writes.

Talos encodes machine configs with ``go.yaml.in/yaml/v4`` (``yaml.Marshal``: v3 defaults,
4-space indent, unlimited line width, "legacy" quoting).  PyYAML cannot reproduce that
output byte for byte (its indentation of sequences, its quoting choices and its line
folding all differ), and byte equality with ``talosctl gen config`` is a requirement, so
this module re-implements the few emitter rules that matter for block-style documents.

Theory of operation (rules learned by reading the Go emitter; an independent implementation):

* Values are plain Python data: ``dict`` (emitted in insertion order: callers that model a
  Go map sort it first, see :func:`go_sorted`), ``list``, ``str``, ``bool``, ``int``,
  ``float`` and ``None``.
* Indentation: a block nested under a mapping key at indent ``k`` starts at the next
  multiple of 4 above ``k``; a block that is a sequence item at dash column ``d`` starts
  at ``d + 2`` (right after ``"- "``).  Empty collections are written ``{}`` / ``[]``.
* Strings are written plain unless (a) they contain a line break (literal block ``|``),
  (b) read back plain they would not be a string (``true``, ``1``, ``""``, dates...):
  double quotes, (c) YAML 1.1 booleans and base-60 numbers: single quotes, or (d) the
  plain form is not allowed (leading indicator, ``": "``, ``" #"``, edge spaces): single
  quotes, or double quotes when single quotes cannot carry the text.

Not covered (never produced by Talos configs): flow style beyond empty collections,
anchors and tags, and keys longer than 128 characters, which Go writes as ``? key``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from functools import cmp_to_key
from typing import Any

__all__ = ["dump", "dump_all", "go_key_less", "go_sorted"]

_INDENT = 4

# YAML 1.1 booleans: Go forces them into quotes so that old parsers read them as strings.
_OLD_BOOLS = frozenset(
    ["y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF"],
)
_BASE60_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_YAML_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_DOT_FLOAT = re.compile(r"^\.[0-9]+(?:[eE][-+]?[0-9]+)?$")
_NON_STR_WORDS = frozenset(
    [
        "true", "True", "TRUE", "false", "False", "FALSE",
        "", "~", "null", "Null", "NULL",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
        "-.inf", "-.Inf", "-.INF", "-0", "-0.0", "<<",
    ],
)  # fmt: skip
_TS_DATE = r"(\d{4})-(\d{1,2})-(\d{1,2})"
_TS_TIME = r"\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?"
_TIMESTAMPS = (
    re.compile(rf"^{_TS_DATE}$"),
    re.compile(rf"^{_TS_DATE}[Tt]{_TS_TIME}(?:Z|[+-]\d{{2}}:\d{{2}})$"),
    re.compile(rf"^{_TS_DATE} {_TS_TIME}$"),
)
_LINE_BREAKS = frozenset("\r\n\x85\u2028\u2029")
_FLOW_AND_BLOCK_FIRST = frozenset("#,[]{}&*!|>'\"%@`")


def _is_timestamp(text: str) -> bool:
    for pattern in _TIMESTAMPS:
        match = pattern.match(text)
        if match:
            try:
                date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                return False
            return True
    return False


def _go_parse_int(text: str) -> bool:
    """Whether Go's ``strconv.ParseInt(text, 0, 64)`` or ``ParseUint`` would succeed."""
    body = text
    negative = False
    if body[:1] in "+-" and body:
        negative = body[0] == "-"
        body = body[1:]
    if not body:
        return False
    base, digits = 10, body
    if len(body) > 1 and body[0] == "0":
        prefix = body[1].lower()
        base, digits = {"x": (16, body[2:]), "o": (8, body[2:]), "b": (2, body[2:])}.get(
            prefix,
            (8, body[1:]),
        )
    if not digits or not digits.isascii() or not digits.isalnum():
        return False
    try:
        value = int(digits, base)
    except ValueError:
        return False
    if negative:
        return value <= 2**63
    return value < 2**64


def resolves_to_string(text: str) -> bool:
    """Whether ``text`` written as a plain scalar reads back as a string (YAML core schema)."""
    if text in _NON_STR_WORDS:
        return False
    first = text[0]
    if first == ".":
        return not _DOT_FLOAT.match(text)
    if first in "+-0123456789":
        if _is_timestamp(text):
            return False
        plain = text.replace("_", "")
        if _go_parse_int(plain):
            return False
        if _YAML_FLOAT.match(plain) and not math.isinf(float(plain)):
            return False
    return True


def _is_printable(ch: str) -> bool:
    code = ord(ch)
    return (
        code == 0x0A
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
    )


def _analyze(text: str) -> tuple[bool, bool, bool]:
    """Return (plain allowed, single quotes allowed, literal block allowed) in block context."""
    if not text:
        return True, True, False
    block_indicators = text.startswith(("---", "..."))
    line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    preceded_by_ws = True
    last = len(text) - 1
    for i, ch in enumerate(text):
        followed_by_ws = i == last or text[i + 1] in " \t"
        if i == 0:
            if ch in _FLOW_AND_BLOCK_FIRST or (ch in "?:-" and followed_by_ws):
                block_indicators = True
        elif (ch == ":" and followed_by_ws) or (ch == "#" and preceded_by_ws):
            block_indicators = True
        if ch == "\t":
            tabs = True
        elif not _is_printable(ch):
            special = True
        if ch == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif ch in _LINE_BREAKS:
            line_breaks = True
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = ch in " \t\0" or ch in _LINE_BREAKS
    plain = not (
        leading_space or leading_break or trailing_space or trailing_break or break_space
        or space_break or tabs or special or line_breaks or block_indicators
    )  # fmt: skip
    single = not (break_space or space_break or tabs or special)
    block = not (trailing_space or space_break or special)
    return plain, single, block


_ESCAPES = {
    0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f",
    0x0D: "r", 0x1B: "e", 0x22: '"', 0x5C: "\\", 0x85: "N", 0xA0: "_", 0x2028: "L",
    0x2029: "P",
}  # fmt: skip


def _double_quoted(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if not _is_printable(ch) or code == 0xFEFF or ch in _LINE_BREAKS or ch in '"\\':
            if code in _ESCAPES:
                out.append("\\" + _ESCAPES[code])
            elif code <= 0xFF:
                out.append(f"\\x{code:02X}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04X}")
            else:
                out.append(f"\\U{code:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _single_quoted(text: str, indent: int) -> str:
    """Single-quoted scalar; a line break inside is written the way YAML folds it back."""
    out = ["'"]
    breaks = False
    for ch in text:
        if ch in _LINE_BREAKS:
            if not breaks and ch == "\n":
                out.append("\n")  # a lone newline must be doubled to survive folding
            out.append(ch)
            breaks = True
            continue
        if breaks:
            out.append(" " * indent)
        out.append("''" if ch == "'" else ch)
        breaks = False
    out.append("'")
    return "".join(out)


def _literal(text: str, indent: int) -> str:
    """Literal block scalar: header, then the text with each line at ``indent``."""
    header = "|"
    if text[0] == " ":
        header += str(_INDENT)
    if text[-1] not in _LINE_BREAKS:
        header += "-"
    elif len(text) == 1 or text[-2] in _LINE_BREAKS:
        header += "+"
    out = [header, "\n"]
    breaks = True
    for ch in text:
        if ch in _LINE_BREAKS:
            # Go copies a break character as it is; only "\n" is its own line ending.
            out.append(ch)
            breaks = True
            continue
        if breaks:
            out.append(" " * indent)
        out.append(ch)
        breaks = False
    return "".join(out)


def _is_space(ch: str) -> bool:
    # Go's unicode.IsSpace; Python's isspace also counts the \x1c-\x1f separators.
    return ch.isspace() and not "\x1c" <= ch <= "\x1f"


def _scalar_style(text: str, *, key: bool) -> str:
    """Pick the Go emitter's style for a string: plain, single, double or literal."""
    if "\n" in text:
        style = "literal" if len(text) >= 2 and not all(map(_is_space, text)) else "double"
    elif text in _OLD_BOOLS or text == "<<" or (text[:1] in "+-0123456789" and _BASE60_FLOAT.match(text)):
        style = "single"
    elif not text or not resolves_to_string(text):
        style = "double"
    else:
        style = "plain"
    plain_ok, single_ok, block_ok = _analyze(text)
    if key and any(ch in _LINE_BREAKS for ch in text):
        style = "double"
    if style == "plain" and (not plain_ok or (not text and key)):
        style = "single"
    if style == "single" and not single_ok:
        style = "double"
    if style == "literal" and (not block_ok or key):
        style = "double"
    return style


def _format_float(value: float) -> str:
    """Format like Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` with YAML's inf/nan words."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    # Decimal point position relative to the digit string (Go's digs.dp).
    point = len(digit_tuple) + int(exponent) if digits != "0" else 1
    prefix = "-" if sign else ""
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:  # shortest 'g' switches to %e beyond these exponents
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def _scalar_lines(value: object, indent: int, *, key: bool = False) -> list[str]:  # noqa: PLR0911 - one per type
    """Render a scalar; the first line has no indentation, later lines are absolute."""
    if value is None:
        return ["null"]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float):
        return [_format_float(value)]
    if not isinstance(value, str):
        msg = f"cannot encode {type(value).__name__} as YAML"
        raise TypeError(msg)
    style = _scalar_style(value, key=key)
    if style == "plain":
        return [value]
    if style == "double":
        return [_double_quoted(value)]
    rendered = _single_quoted(value, indent) if style == "single" else _literal(value, indent)
    # The caller ends every line with "\n": drop the one the scalar itself ends with.
    return rendered.removesuffix("\n").split("\n")


def _child_indent(indent: int) -> int:
    """Indent of a block nested under a mapping key: the next multiple of the indent step."""
    return _INDENT * ((indent + _INDENT) // _INDENT)


def _is_empty_collection(value: object) -> str | None:
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    return None


def _block(value: object, indent: int) -> list[str]:
    """Render a non-empty collection as absolute-indented lines starting at ``indent``."""
    lines: list[str] = []
    pad = " " * indent
    if isinstance(value, Mapping):
        for raw_key, item in value.items():
            key = _scalar_lines(raw_key, indent, key=True)[0]
            lines.extend(_with_prefix(f"{pad}{key}:", item, _child_indent(indent), mapping=True))
        return lines
    if not isinstance(value, list | tuple):
        msg = f"cannot encode {type(value).__name__} as a YAML block"
        raise TypeError(msg)
    for item in value:
        lines.extend(_with_prefix(f"{pad}-", item, indent + 2, mapping=False))
    return lines


def _with_prefix(prefix: str, item: object, indent: int, *, mapping: bool) -> list[str]:
    """Render ``item`` after ``prefix`` (``key:`` or ``-``), nested blocks at ``indent``."""
    empty = _is_empty_collection(item)
    if empty is not None:
        return [f"{prefix} {empty}"]
    if isinstance(item, Mapping | list | tuple):
        if mapping:
            return [prefix, *_block(item, indent)]
        # A collection inside a sequence item starts on the dash line ("- key: v", "- - v").
        nested = _block(item, indent)
        return [prefix + " " + nested[0][indent:], *nested[1:]]
    rendered = _scalar_lines(item, indent)
    return [f"{prefix} {rendered[0]}", *rendered[1:]]


def dump(value: object) -> str:
    """Encode one YAML document the way Go's ``yaml.Marshal`` does (4-space indent)."""
    empty = _is_empty_collection(value)
    if empty is not None:
        return empty + "\n"
    if isinstance(value, Mapping | list | tuple):
        return "\n".join(_block(value, 0)) + "\n"
    return "\n".join(_scalar_lines(value, 0)) + "\n"


def dump_all(documents: Iterable[object]) -> str:
    """Encode several documents separated by ``---`` lines, as Talos joins config documents."""
    return "---\n".join(dump(doc) for doc in documents)


def go_key_less(left: str, right: str) -> bool:
    """Go yaml's map key order: letters compare as text, runs of digits as numbers."""
    digits = False
    for index, (a_ch, b_ch) in enumerate(zip(left, right, strict=False)):
        if a_ch == b_ch:
            digits = a_ch.isdigit()
            continue
        a_letter, b_letter = a_ch.isalpha(), b_ch.isalpha()
        if a_letter and b_letter:
            return a_ch < b_ch
        if a_letter or b_letter:
            return a_letter if digits else b_letter
        return _digit_run_less(left, right, index)
    return len(left) < len(right)


def _digit_run_less(left: str, right: str, index: int) -> bool:
    a_num = b_num = 0
    if left[index] == "0" or right[index] == "0":
        # A zero after a non-zero digit is not a leading zero: compare the runs as numbers.
        for back in range(index - 1, -1, -1):
            if not left[back].isdigit():
                break
            if left[back] != "0":
                a_num = b_num = 1
                break
    a_end = index
    while a_end < len(left) and left[a_end].isdigit():
        a_num = a_num * 10 + int(left[a_end])
        a_end += 1
    b_end = index
    while b_end < len(right) and right[b_end].isdigit():
        b_num = b_num * 10 + int(right[b_end])
        b_end += 1
    if a_num != b_num:
        return a_num < b_num
    if a_end != b_end:
        return a_end < b_end
    return left[index] < right[index]


def _go_compare(left: str, right: str) -> int:
    if go_key_less(left, right):
        return -1
    return 1 if go_key_less(right, left) else 0


def go_sorted(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a mapping with keys in Go's map order (Go sorts map keys when encoding)."""
    return {key: mapping[key] for key in sorted(mapping, key=cmp_to_key(_go_compare))}
