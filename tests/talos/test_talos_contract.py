"""Version contracts: the supported range, resolution of newer/older releases, feature switches."""

from __future__ import annotations

import pytest

from provisioner.talos.contract import (
    NEWEST,
    OLDEST,
    SUPPORTED_CONTRACTS,
    UnsupportedContractError,
    VersionContract,
    resolve,
)


def test_supported_range_is_every_release_with_stability_goldens() -> None:
    assert [str(c) for c in SUPPORTED_CONTRACTS] == ["1.10", "1.11", "1.12", "1.13", "1.14", "1.15"]
    assert (VersionContract(1, 10), VersionContract(1, 15)) == (OLDEST, NEWEST)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("v1.10.0", "1.10"), ("1.12.3", "1.12"), ("v1.13.9", "1.13"), ("v1.15.0-beta.0", "1.15")],
)
def test_known_versions_resolve_to_their_own_contract(version: str, expected: str) -> None:
    resolved = resolve(version)
    assert str(resolved.contract) == expected
    assert resolved.note == ""


@pytest.mark.parametrize("version", ["v1.16.0", "v1.17.2", "v2.0.0"])
def test_newer_versions_generate_the_newest_contract_and_say_so(version: str) -> None:
    resolved = resolve(version)
    assert resolved.contract == NEWEST
    assert resolved.note == (
        f"Talos {version} is newer than the newest known version contract 1.15: generating the 1.15 contract"
    )


@pytest.mark.parametrize("version", ["v1.9.6", "v1.3.0", "v0.14.0"])
def test_older_versions_are_refused(version: str) -> None:
    with pytest.raises(
        UnsupportedContractError, match=r"older than the oldest supported version contract 1\.10"
    ):
        resolve(version)


def test_not_a_version_is_refused() -> None:
    with pytest.raises(UnsupportedContractError, match="invalid Talos version"):
        resolve("latest")


@pytest.mark.parametrize(
    ("feature", "first"),
    [
        # (contract.go predicate, first contract it is on for)
        ("grub_use_uki_cmdline_default", "1.12"),
        ("hide_rbac_and_key_usage", "1.12"),
        ("hide_disable_psp", "1.12"),
        ("multidoc_network_config", "1.12"),
        ("kubespan_multidoc_config", "1.13"),
        ("multidoc_kubernetes", "1.14"),
    ],
)
def test_features_switch_on_by_version_comparison(feature: str, first: str) -> None:
    on = [str(c) for c in SUPPORTED_CONTRACTS if getattr(c, feature)]
    assert on == [str(c) for c in SUPPORTED_CONTRACTS if c >= VersionContract.parse(first)]


def test_endpoint_sans_only_up_to_1_11() -> None:
    assert [str(c) for c in SUPPORTED_CONTRACTS if c.populate_cluster_sans_from_endpoint] == ["1.10", "1.11"]
