"""Config generation for varied machines, patches, and validation of the results."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.talos.config import ClusterSpec, LinkSpec, MachineSpec, generate_config, generate_documents
from provisioner.talos.contract import SUPPORTED_CONTRACTS, UnsupportedContractError, VersionContract
from provisioner.talos.patches import ConfigPatch, PatchError, apply_patches
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.validate import validate_config
from provisioner.talos.yamlload import load_all

from .conftest import V113, V114


def _cluster(bundle: SecretsBundle, contract: VersionContract, **kwargs: Any) -> ClusterSpec:
    return ClusterSpec("lab", "https://10.77.0.10:6443", "1.34.1", contract, bundle, **kwargs)


def _by_kind(text: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in load_all(text) if doc.get("kind", "v1alpha1") == kind]


MACHINES = {
    "plain-worker": MachineSpec("worker", install_disk="/dev/sda"),
    "static-controlplane": MachineSpec(
        "controlplane",
        hostname="r1-n1",
        install_disk="/dev/nvme0n1",
        links=(LinkSpec("eth0", addresses=("10.77.0.11/24",), gateway="10.77.0.1", mtu=9000),),
        nameservers=("10.77.0.1", "1.1.1.1"),
        cert_sans=("r1-n1.lab.example",),
        node_labels={"topology.kubernetes.io/zone": "r1"},
        node_taints={"dedicated": "infra:NoSchedule"},
        sysctls={"net.core.somaxconn": "65535"},
        extra_kernel_args=("console=ttyS0",),
    ),
    "labelled-worker": MachineSpec(
        "worker",
        hostname="r1-n7",
        install_disk="/dev/sdb",
        install_image="factory.talos.dev/metal-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.13.0",
        node_labels={"role": "storage", "disk": "ssd"},
        links=(LinkSpec("bond0", addresses=("10.77.0.17/24", "fd00::17/64")),),
    ),
}
CLUSTER_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "busy": {
        "dns_domain": "lab.local",
        "cni": "none",
        "allow_scheduling_on_control_planes": True,
        "cert_sans": ("api.lab.example", "10.77.0.10"),
        "registry_mirrors": {
            "docker.io": ("https://mirror.lab:5000",),
            "ghcr.io": ("https://m1", "https://m2"),
        },
        "sysctls": {"vm.max_map_count": "262144"},
    },
    "custom-cni": {"cni": "custom", "cni_urls": ("https://example.com/cilium.yaml",)},
}


@pytest.mark.parametrize("contract", SUPPORTED_CONTRACTS, ids=str)
@pytest.mark.parametrize("options", list(CLUSTER_OPTIONS), ids=str)
@pytest.mark.parametrize("machine", list(MACHINES), ids=str)
def test_varied_configs_validate(
    fresh_bundle: SecretsBundle, contract: VersionContract, options: str, machine: str
) -> None:
    text = generate_config(_cluster(fresh_bundle, contract, **CLUSTER_OPTIONS[options]), MACHINES[machine])
    assert validate_config(text, contract) == []
    main = _by_kind(text, "v1alpha1")[0]
    assert main["machine"]["type"] == MACHINES[machine].role
    if MACHINES[machine].role == "worker":
        assert main["machine"]["ca"]["key"] == ""


def test_machine_settings_land_in_114_documents(fresh_bundle: SecretsBundle) -> None:
    text = generate_config(_cluster(fresh_bundle, V114), MACHINES["static-controlplane"])
    assert _by_kind(text, "HostnameConfig") == [
        {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "r1-n1"}
    ]
    link = _by_kind(text, "LinkConfig")[0]
    assert link == {
        "apiVersion": "v1alpha1",
        "kind": "LinkConfig",
        "name": "eth0",
        "up": True,
        "mtu": 9000,
        "addresses": [{"address": "10.77.0.11/24"}],
        "routes": [{"gateway": "10.77.0.1"}],
    }
    resolver = _by_kind(text, "ResolverConfig")[0]
    assert resolver["nameservers"] == [{"address": "10.77.0.1"}, {"address": "1.1.1.1"}]
    assert resolver["hostDNS"]["enabled"] is True
    node = _by_kind(text, "KubeNodeConfig")[0]
    assert node["labels"]["topology.kubernetes.io/zone"] == "r1"
    assert node["taints"] == {
        "dedicated": "infra:NoSchedule",
        "node-role.kubernetes.io/control-plane": "NoSchedule",
    }
    assert _by_kind(text, "SysctlConfig")[0]["params"] == {"net.core.somaxconn": "65535"}
    install = _by_kind(text, "UnattendedInstallConfig")[0]
    assert install["provisioning"]["diskSelector"]["match"] == 'disk.dev_path == "/dev/nvme0n1"'
    assert "r1-n1.lab.example" in _by_kind(text, "v1alpha1")[0]["machine"]["certSANs"]


def test_machine_settings_land_in_113_document(fresh_bundle: SecretsBundle) -> None:
    cluster = _cluster(fresh_bundle, V113, **CLUSTER_OPTIONS["busy"])
    text = generate_config(cluster, MACHINES["static-controlplane"])
    machine = _by_kind(text, "v1alpha1")[0]["machine"]
    assert machine["install"] == {
        "disk": "/dev/nvme0n1",
        "extraKernelArgs": ["console=ttyS0"],
        "wipe": False,
        # Talos refuses extraKernelArgs with the UKI command line on metal: turned off.
        "grubUseUKICmdline": False,
    }
    assert machine["sysctls"] == {"net.core.somaxconn": "65535", "vm.max_map_count": "262144"}
    assert machine["nodeLabels"]["topology.kubernetes.io/zone"] == "r1"
    assert machine["nodeTaints"] == {"dedicated": "infra:NoSchedule"}
    cluster_doc = _by_kind(text, "v1alpha1")[0]["cluster"]
    assert cluster_doc["network"]["cni"] == {"name": "none"}
    assert cluster_doc["network"]["dnsDomain"] == "lab.local"
    assert cluster_doc["allowSchedulingOnControlPlanes"] is True
    assert [doc["name"] for doc in _by_kind(text, "RegistryMirrorConfig")] == ["docker.io", "ghcr.io"]


def test_cni_choices_in_114(fresh_bundle: SecretsBundle) -> None:
    def kinds(**options: Any) -> list[str]:
        text = generate_config(_cluster(fresh_bundle, V114, **options), MachineSpec("controlplane"))
        return [doc["kind"] for doc in load_all(text) if "kind" in doc]

    assert "KubeFlannelCNIConfig" in kinds()
    assert "KubeFlannelCNIConfig" not in kinds(cni="none")
    custom = kinds(cni="custom", cni_urls=("https://a/x.yaml", "https://b/y.yaml"))
    assert "KubeFlannelCNIConfig" not in custom
    assert custom.count("KubeExternalManifestConfig") == 2


def test_custom_cni_needs_urls(fresh_bundle: SecretsBundle) -> None:
    with pytest.raises(ValueError, match="manifest URL"):
        generate_config(_cluster(fresh_bundle, V114, cni="custom"), MachineSpec("worker"))


def test_cluster_then_machine_patches(fresh_bundle: SecretsBundle) -> None:
    cluster_patch = ConfigPatch.parse("machine:\n  install:\n    wipe: true\n  sysctls:\n    a: '1'\n")
    machine_patch = ConfigPatch.parse('[{"op": "replace", "path": "/machine/sysctls/a", "value": "2"}]')
    cluster = _cluster(fresh_bundle, V113, patches=(cluster_patch,), install_disk="/dev/sda")
    docs = generate_documents(cluster, MachineSpec("worker", patches=(machine_patch,)))
    assert docs[0]["machine"]["install"]["wipe"] is True
    assert docs[0]["machine"]["sysctls"] == {"a": "2"}
    # Patched documents are re-ordered like Go writes them: sysctls come after install.
    assert list(docs[0]["machine"]).index("sysctls") > list(docs[0]["machine"]).index("install")


def test_strategic_merge_semantics() -> None:
    base: list[dict[str, Any]] = [{"version": "v1alpha1", "machine": {"certSANs": ["a"], "install": {"disk": "/dev/sda", "wipe": False}},
             "cluster": {"network": {"podSubnets": ["10.0.0.0/8"]}}},
            {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}]  # fmt: skip
    patch = ConfigPatch.parse(
        "machine:\n  certSANs: [b]\n  install:\n    disk: {$patch: delete}\n"
        "cluster:\n  network:\n    podSubnets: [192.168.0.0/16]\n"
        "---\napiVersion: v1alpha1\nkind: HostnameConfig\n$patch: delete\n"
        "---\napiVersion: v1alpha1\nkind: SysctlConfig\nparams: {x: '1'}\n"
    )
    result = apply_patches(base, [patch])
    assert result[0]["machine"]["certSANs"] == ["a", "b"]  # lists append
    assert result[0]["machine"]["install"] == {"wipe": False}  # $patch: delete removes the key
    assert result[0]["cluster"]["network"]["podSubnets"] == ["192.168.0.0/16"]  # replace-tagged list
    assert [doc.get("kind") for doc in result] == [None, "SysctlConfig"]
    assert base[0]["machine"]["certSANs"] == ["a"], "input must not be mutated"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- strings\n", "RFC 6902"),
        ("a: [\n", "not valid YAML"),
        ("", "one or more YAML mappings"),
    ],
)
def test_bad_patches(text: str, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        ConfigPatch.parse(text)


def test_failing_json_patch_is_reported(fresh_bundle: SecretsBundle) -> None:
    patch = ConfigPatch.parse('[{"op": "remove", "path": "/machine/nope"}]')
    with pytest.raises(PatchError, match="JSON patch failed"):
        generate_config(_cluster(fresh_bundle, V114, patches=(patch,)), MachineSpec("worker"))


@pytest.mark.parametrize("text", ["1.9", "2.0", "banana", "1.16"])
def test_unsupported_contracts(text: str) -> None:
    with pytest.raises(UnsupportedContractError):
        VersionContract.parse(text)


def test_contract_parse_accepts_release_tags() -> None:
    assert VersionContract.parse("v1.13.9") == V113
    assert VersionContract.parse("v1.14.0-rc.1") == V114


def test_patched_scalars_become_strings_where_talos_expects_strings(fresh_bundle: SecretsBundle) -> None:
    patch = ConfigPatch.parse(
        "apiVersion: v1alpha1\nkind: SysctlConfig\nparams:\n  net.core.somaxconn: 65535\n"
    )
    text = generate_config(_cluster(fresh_bundle, V114, patches=(patch,)), MachineSpec("worker"))
    assert 'net.core.somaxconn: "65535"' in text
    assert validate_config(text, V114, mode="cloud") == []


def test_admission_plugins_merge_by_name(golden_bundle: SecretsBundle) -> None:
    patch = ConfigPatch.parse(
        "cluster:\n  apiServer:\n    admissionControl:\n"
        "      - name: PodSecurity\n        configuration:\n          defaults:\n            enforce: restricted\n"
        "      - name: EventRateLimit\n        configuration: {kind: Configuration}\n"
    )
    docs = generate_documents(_cluster(golden_bundle, V113, patches=(patch,)), MachineSpec("controlplane"))
    plugins = docs[0]["cluster"]["apiServer"]["admissionControl"]
    assert [plugin["name"] for plugin in plugins] == ["PodSecurity", "EventRateLimit"]
    defaults = plugins[0]["configuration"]["defaults"]
    assert defaults["enforce"] == "restricted"
    assert defaults["audit"] == "restricted"  # untouched keys survive the merge


def test_patch_scalar_replaces_and_null_keeps(golden_bundle: SecretsBundle) -> None:
    patch = ConfigPatch.parse("machine:\n  install:\n    disk: /dev/sdb\n    image: null\n")
    docs = generate_documents(
        _cluster(golden_bundle, V113, install_disk="/dev/sda"), MachineSpec("worker", patches=(patch,))
    )
    assert docs[0]["machine"]["install"]["disk"] == "/dev/sdb"
    assert "image" not in docs[0]["machine"]["install"]
