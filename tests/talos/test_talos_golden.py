"""Byte-for-byte equality with what Talos itself generates (golden files from Talos)."""

from __future__ import annotations

import pytest

from provisioner.talos.config import ClusterSpec, MachineSpec, generate_config
from provisioner.talos.contract import VersionContract
from provisioner.talos.secrets import SecretsBundle, dump_bundle, load_bundle

from .conftest import golden_text


@pytest.mark.parametrize(
    ("contract", "role", "golden"),
    [
        ("1.13", "controlplane", "v1.13-base-controlplane.yaml"),
        ("1.13", "worker", "v1.13-base-worker.yaml"),
        ("1.14", "controlplane", "v1.14-base-controlplane.yaml"),
    ],
)
def test_generated_config_is_byte_identical_to_talos(
    golden_bundle: SecretsBundle, contract: str, role: str, golden: str
) -> None:
    cluster = ClusterSpec(
        "base", "https://base:6443", "1.28.0", VersionContract.parse(contract), golden_bundle
    )
    generated = generate_config(cluster, MachineSpec("controlplane" if role == "controlplane" else "worker"))
    assert generated == golden_text(golden)


def test_secrets_bundle_round_trips_byte_for_byte() -> None:
    text = golden_text("secrets.yaml")
    # The golden file opens with a comment line that talosctl itself does not write.
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert dump_bundle(load_bundle(text)) == body


def test_loaded_bundle_holds_golden_values(golden_bundle: SecretsBundle) -> None:
    assert golden_bundle.trustd_token == "d8cwfa.eyvpi0xwxyarbfid"
    assert golden_bundle.bootstrap_token == "inn7ol.u4ehnti8qyls9ymo"
    assert golden_bundle.os.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
    assert golden_bundle.os.crt.startswith(b"-----BEGIN CERTIFICATE-----")
