"""Byte-for-byte equality with what Talos itself generates, for every supported contract.

The goldens are Talos's own stability testdata (tests/data/talos/stability, origin in the
README there): ``base`` is ``generate.NewInput("base", "https://base:6443", "1.28.0")``
with the test secrets bundle; ``overrides`` adds SANs, scheduling on control planes, a DNS
domain, an install disk, install kernel args, a local API server port, a sysctl, a custom
CNI and a registry mirror, then applies patch.yaml (patch-pre14.yaml before 1.14).
"""

from __future__ import annotations

import difflib

import pytest

from provisioner.talos.config import ClusterSpec, MachineSpec, generate_config
from provisioner.talos.contract import SUPPORTED_CONTRACTS, VersionContract
from provisioner.talos.patches import ConfigPatch
from provisioner.talos.secrets import SecretsBundle, dump_bundle, load_bundle
from provisioner.talos.validate import validate_config

from .conftest import golden_text, stability_patch, stability_text

ROLES = ("controlplane", "worker")
# Talos's WithAdditionalSubjectAltNames, WithAllowSchedulingOnControlPlanes, ... of the
# stability test's "with overrides" case, as our ClusterSpec fields.
OVERRIDES = {
    "cert_sans": ("foo", "bar"),
    "allow_scheduling_on_control_planes": True,
    "dns_domain": "example.com",
    "install_disk": "/dev/vda",
    "extra_kernel_args": ("foo=bar", "bar=baz"),
    "local_api_server_port": 5443,
    "sysctls": {"foo": "bar"},
    "cni": "custom",
    "cni_urls": ("https://example.com/cni.yaml",),
    "registry_mirrors": {"ghcr.io": ("https://ghcr.io.my-mirror.com",)},
}
UKI_OFF = "        grubUseUKICmdline: false\n"
UKI_ON = "        grubUseUKICmdline: true\n"


def _cluster(
    bundle: SecretsBundle, contract: VersionContract, flavor: str, *extra: ConfigPatch
) -> ClusterSpec:
    if flavor == "base":
        return ClusterSpec("base", "https://base:6443", "1.28.0", contract, bundle, patches=extra)
    patches = (ConfigPatch.parse(stability_patch(contract)), *extra)
    return ClusterSpec("base", "https://base:6443", "1.28.0", contract, bundle, patches=patches, **OVERRIDES)


def _uki_conflict(contract: VersionContract, flavor: str) -> bool:
    """Talos's own generator writes extraKernelArgs with grubUseUKICmdline: true here."""
    return (
        flavor == "overrides" and contract.grub_use_uki_cmdline_default and not contract.multidoc_kubernetes
    )


def _diff(expected: str, got: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), "talos", "ours"))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("flavor", ["base", "overrides"])
@pytest.mark.parametrize("contract", SUPPORTED_CONTRACTS, ids=str)
def test_generated_config_is_byte_identical_to_talos(
    golden_bundle: SecretsBundle, contract: VersionContract, flavor: str, role: str
) -> None:
    # Where Talos writes a combination it refuses on metal, we turn the UKI command line
    # off; an operator patch turning it back on reproduces Talos's output exactly.
    extra = (
        [ConfigPatch.parse("machine: {install: {grubUseUKICmdline: true}}")]
        if _uki_conflict(contract, flavor)
        else []
    )
    generated = generate_config(_cluster(golden_bundle, contract, flavor, *extra), MachineSpec(role))
    expected = stability_text(contract, f"{flavor}-{role}.yaml")
    assert generated == expected, _diff(expected, generated)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "contract", [c for c in SUPPORTED_CONTRACTS if _uki_conflict(c, "overrides")], ids=str
)
def test_install_kernel_args_turn_the_uki_cmdline_off(
    golden_bundle: SecretsBundle, contract: VersionContract, role: str
) -> None:
    generated = generate_config(_cluster(golden_bundle, contract, "overrides"), MachineSpec(role))
    talos = stability_text(contract, f"overrides-{role}.yaml")
    assert generated == talos.replace(UKI_ON, UKI_OFF)
    assert validate_config(talos, contract) == [
        "machine.install: install.extraKernelArgs and install.grubUseUKICmdline can't be used together"
    ]
    assert validate_config(generated, contract) == []


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("flavor", ["base", "overrides"])
@pytest.mark.parametrize("contract", SUPPORTED_CONTRACTS, ids=str)
def test_talos_goldens_validate_as_talos_does(contract: VersionContract, flavor: str, role: str) -> None:
    """Every golden passes off metal; on metal Talos refuses exactly what it refuses."""
    text = stability_text(contract, f"{flavor}-{role}.yaml")
    assert validate_config(text, contract, mode="container") == []
    expected = []
    if flavor == "base":
        expected = (
            ["machine.install: either install disk or diskSelector should be defined"]
            if not contract.multidoc_kubernetes
            else ["UnattendedInstallConfig: an install disk is required on metal (provisioner rule)"]
        )
    elif _uki_conflict(contract, flavor):
        expected = [
            "machine.install: install.extraKernelArgs and install.grubUseUKICmdline can't be used together"
        ]
    assert validate_config(text, contract, mode="metal") == expected


@pytest.mark.parametrize("contract", SUPPORTED_CONTRACTS, ids=str)
def test_goldens_validate_with_the_contract_guessed_from_their_shape(contract: VersionContract) -> None:
    for flavor in ("base", "overrides"):
        for role in ROLES:
            assert validate_config(stability_text(contract, f"{flavor}-{role}.yaml"), mode="container") == []


def test_shared_goldens_are_the_stability_goldens() -> None:
    for contract, role in ((VersionContract(1, 13), "controlplane"), (VersionContract(1, 13), "worker")):
        assert golden_text(f"v{contract}-base-{role}.yaml") == stability_text(contract, f"base-{role}.yaml")
    assert golden_text("v1.14-base-controlplane.yaml") == stability_text(
        VersionContract(1, 14), "base-controlplane.yaml"
    )


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
