"""Edges of Talos config generation the golden tests do not reach: Go's map-key order, the
emitter's refusals and rare scalar styles, patch corner cases, rule checks on broken
certificates and endpoints, and optional secrets fields."""

from __future__ import annotations

import base64
import functools
from typing import Any

import pytest

from provisioner.talos import goyaml
from provisioner.talos.patches import ConfigPatch, PatchError, apply_patches
from provisioner.talos.rules import check_rules
from provisioner.talos.secrets import SecretsBundle, SecretsFormatError, bundle_from_dict, bundle_to_dict
from provisioner.talos.yamlload import load_all

# -- Go's yaml map-key order (yaml.v3 keyList.Less) ------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "less"),
    [
        ("a", "b", True),
        ("a2", "a10", True),  # digit runs compare as numbers
        ("a10", "a2", False),
        ("a1b", "a12", True),  # after a digit, a letter sorts before a digit
        ("a12", "a1b", False),
        ("a-", "ab", True),  # not after a digit: the non-letter sorts first
        ("ab", "a-", False),
        ("x1-", "x10", True),  # a zero after a non-zero digit is part of the number 10
        ("x10", "x1-", False),
        ("x0-", "x00", True),  # leading zeros: equal value, the shorter run first
        ("x00", "x0-", False),
        ("ab", "abc", True),
        ("abc", "ab", False),
    ],
)
def test_go_map_key_order(left: str, right: str, less: bool) -> None:
    assert goyaml.go_key_less(left, right) is less


def test_sorting_with_go_order() -> None:
    keys = ["node10", "node9", "node1", "nodeA", "node-x"]
    order = sorted(keys, key=functools.cmp_to_key(lambda a, b: -1 if goyaml.go_key_less(a, b) else 1))
    assert order == ["node-x", "node1", "node9", "node10", "nodeA"]


# -- the emitter ------------------------------------------------------------------------------


def test_only_yaml_values_can_be_encoded() -> None:
    with pytest.raises(TypeError, match="cannot encode object as YAML"):
        goyaml.dump({"a": object()})


def test_only_real_dates_are_quoted_as_timestamps() -> None:
    # Go resolves "2023-02-28" to a timestamp, so a string of that shape must be quoted;
    # February 30th is no date and stays a plain string.
    assert goyaml.dump("2023-02-28") == '"2023-02-28"\n'
    assert goyaml.dump("2023-02-30") == "2023-02-30\n"


@pytest.mark.parametrize("text", ["a\u2028b", " a\nb", "x\n\ny", " lead\ntrail "])
def test_line_breaks_survive_a_round_trip(text: str) -> None:
    # As mapping values, where Talos configs carry multi-line strings. (Inside sequences a
    # value with a leading space gets an indentation indicator that PyYAML reads
    # differently; whether Go's yaml.v3 emits the same bytes there is not checked here.)
    for doc in ({"key": text}, {"outer": {"inner": text}}):
        assert load_all(goyaml.dump(doc)) == [doc]


# -- patches ----------------------------------------------------------------------------------

BASE: list[dict[str, Any]] = [
    {"version": "v1alpha1", "machine": {"type": "worker", "kubelet": {"extraArgs": {"a": "1"}}}},
    {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "n1"},
]


def test_a_null_patch_value_leaves_the_field_alone() -> None:
    patch = ConfigPatch.parse("machine:\n  kubelet: null\n  type: worker\n")
    assert apply_patches(BASE, [patch]) == BASE


def test_deleting_a_document_that_is_not_there_is_a_no_op() -> None:
    patch = ConfigPatch.parse("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\n$patch: delete\n")
    assert apply_patches(BASE, [patch]) == BASE
    gone = ConfigPatch.parse("apiVersion: v1alpha1\nkind: HostnameConfig\n$patch: delete\n")
    assert apply_patches(BASE, [gone]) == BASE[:1]


def test_a_patch_directive_inside_a_mapping_is_not_copied() -> None:
    patch = ConfigPatch.parse("machine:\n  kubelet:\n    $patch: merge\n    extraArgs:\n      b: '2'\n")
    merged = apply_patches(BASE, [patch])
    assert merged[0]["machine"]["kubelet"] == {"extraArgs": {"a": "1", "b": "2"}}


def test_json_patches_need_the_v1alpha1_document() -> None:
    patch = ConfigPatch.parse('[{"op": "add", "path": "/machine/nodeLabels", "value": {"x": "y"}}]')
    assert apply_patches(BASE, [patch])[0]["machine"]["nodeLabels"] == {"x": "y"}
    with pytest.raises(PatchError, match="v1alpha1 document"):
        apply_patches(BASE[1:], [patch])


# -- rules ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_broken_pems_and_endpoints_are_named(golden_bundle: SecretsBundle) -> None:
    main = {
        "version": "v1alpha1",
        "machine": {
            "type": "worker",
            "token": golden_bundle.trustd_token,
            "ca": {"crt": _b64(golden_bundle.os.crt), "key": _b64(b"-----BEGIN PRIVATE KEY-----\nxx\n")},
            "acceptedCAs": [{"crt": _b64(b"not a certificate")}],
            "install": {"disk": "/dev/sda"},
        },
        "cluster": {
            "ca": "not a pair",
            "controlPlane": {"endpoint": "https://cp.example:notaport"},
        },
    }
    errors = check_rules([main], require_install_disk=True)
    assert "machine.ca.key: not a PEM private key" in errors
    assert any(e.startswith("machine.acceptedCAs[0].crt") for e in errors), errors
    assert any(e.startswith("cluster.controlPlane.endpoint") for e in errors), errors
    assert not any(e.startswith("cluster.ca") for e in errors), errors  # not a mapping: the schema's job


# -- secrets ----------------------------------------------------------------------------------


def test_optional_encryption_secrets_are_left_out_when_empty(golden_bundle: SecretsBundle) -> None:
    from dataclasses import replace

    bare = replace(golden_bundle, aescbc_encryption_secret="", secretbox_encryption_secret="")
    tree = bundle_to_dict(bare)
    assert tree["secrets"] == {"bootstraptoken": golden_bundle.bootstrap_token}
    assert bundle_from_dict(tree) == bare


def test_a_secrets_field_of_the_wrong_type_is_named(golden_bundle: SecretsBundle) -> None:
    tree = bundle_to_dict(golden_bundle)
    tree["cluster"] = {**tree["cluster"], "id": 42}
    with pytest.raises(SecretsFormatError, match=r"cluster\.id: expected a string"):
        bundle_from_dict(tree)
