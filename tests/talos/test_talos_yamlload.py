"""The YAML reader resolves scalars like Go's YAML library (YAML 1.2 core schema)."""

from __future__ import annotations

import math

import pytest

from provisioner.talos.yamlload import YAMLLoadError, load_all


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("no", "no"), ("on", "on"), ("yes", "yes"), ("true", True), ("FALSE", False), ("~", None), ("", None),
        ("0755", 0o755), ("0o17", 15), ("0x1F", 31), ("0b101", 5), ("-12", -12), ("1_000", 1000),
        ("1.5", 1.5), ("-.inf", -math.inf), ("2023-01-02", "2023-01-02"), ("1.2.3", "1.2.3"),
        ("'true'", "true"), ('"0755"', "0755"),
    ],
)  # fmt: skip
def test_scalar_resolution(text: str, value: object) -> None:
    assert load_all(f"k: {text}\n") == [{"k": value}]


def test_nan() -> None:
    assert math.isnan(load_all("k: .nan\n")[0]["k"])


def test_empty_documents_are_dropped() -> None:
    assert load_all("---\n---\na: 1\n---\n") == [{"a": 1}]


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(YAMLLoadError, match="duplicate key 'a'"):
        load_all("m:\n  a: 1\n  a: 2\n")
