"""Talos's validation rules, one by one: a config Talos refuses and a close one it accepts.

Messages are Talos's own (v1alpha1_validation.go, the document Validate methods,
container/validate.go); each refusal is checked through `provisioner cluster validate`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner.cli import cli
from provisioner.talos import goyaml
from provisioner.talos.config import ClusterSpec, MachineSpec, generate_documents
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.talosrules import RULES
from provisioner.talos.validate import validate_config

from .conftest import V113, V114

Docs = list[dict[str, Any]]
Mutation = Callable[[Docs], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(docs: Docs) -> None:
        node: Any = docs[0]
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _kind(kind: str, **fields: Any) -> Mutation:
    """Set fields on the first document of ``kind`` (appended when absent)."""

    def mutate(docs: Docs) -> None:
        doc = next((d for d in docs if d.get("kind") == kind), None)
        if doc is None:
            doc = {"apiVersion": "v1alpha1", "kind": kind}
            docs.append(doc)
        doc.update(fields)

    return mutate


def _drop_kind(kind: str) -> Mutation:
    def mutate(docs: Docs) -> None:
        docs[:] = [d for d in docs if d.get("kind") != kind]

    return mutate


def _both(*mutations: Mutation) -> Mutation:
    def mutate(docs: Docs) -> None:
        for mutation in mutations:
            mutation(docs)

    return mutate


def _iface(**device: Any) -> Mutation:
    return _set("machine.network", {"interfaces": [{"interface": "eth0", **device}]})


def _noop(_docs: Docs) -> None:
    return None


# (rule function, contract, role, refused mutation, accepted mutation, Talos's message)
CASES: list[tuple[str, Any, str, Mutation, Mutation, str]] = [
    ("install_disk_on_metal", V113, "worker", _set("machine.install", {"wipe": False}),
     _set("machine.install", {"wipe": False, "diskSelector": {"size": ">= 100GB"}}),
     "machine.install: either install disk or diskSelector should be defined"),
    ("install_kernel_args_vs_uki", V113, "worker",
     _set("machine.install.extraKernelArgs", ["console=ttyS1"]),
     _both(_set("machine.install.extraKernelArgs", ["console=ttyS1"]), _set("machine.install.grubUseUKICmdline", False)),
     "machine.install: install.extraKernelArgs and install.grubUseUKICmdline can't be used together"),
    ("host_dns_forward", V113, "worker", _set("machine.features.hostDNS", {"enabled": False, "forwardKubeDNSToHost": True}),
     _set("machine.features.hostDNS", {"enabled": False}),
     "machine.features.hostDNS: feature hostDNS.forwardKubeDNSToHost requires hostDNS.enabled to be true (.machine.features.hostDNS)"),
    ("machine_type", V113, "worker", _set("machine.type", "bogus"), _set("machine.type", "join"),
     'machine.type: unknown machine type "bogus"'),
    ("ca_present", V113, "worker", _set("machine.ca", {}), _noop,
     "machine.ca: issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)"),
    ("control_plane_ca_key", V113, "controlplane", _set("machine.ca.key", ""), _set("machine.type", "init"),
     "machine.ca: issuing CA key is required for controlplane nodes (.machine.ca.key)"),
    ("worker_keys", V113, "worker", _set("machine.ca.key", "c2VjcmV0"), _set("machine.ca.key", ""),
     "machine.ca: issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)"),
    ("cni", V113, "controlplane", _set("cluster.network.cni", {"name": "flannel", "urls": ["https://x/cni.yaml"]}),
     _set("cluster.network.cni", {"name": "custom", "urls": ["https://x/cni.yaml"]}),
     'cluster.network.cni: "urls" field should be empty for "flannel" CNI'),
    ("vip_on_worker", V113, "worker", _iface(addresses=["10.0.0.2/24"], vip={"ip": "10.0.0.9"}),
     _iface(addresses=["10.0.0.2/24"]),
     "machine.network: virtual (shared) IP is not allowed on non-controlplane nodes"),
    ("network_devices", V113, "worker", _iface(routes=[{"metric": 10}]),
     _iface(routes=[{"gateway": "10.0.0.1"}]),
     "machine.network: [networking.os.device.route[0]]: either network or gateway should be set"),
    ("disk_partitions", V113, "worker",
     _set("machine.disks", [{"device": "/dev/sdb", "partitions": [{"mountpoint": "/var/a"}, {"mountpoint": "/var/b", "size": "10 GB"}]}]),
     _set("machine.disks", [{"device": "/dev/sdb", "partitions": [{"mountpoint": "/var/b", "size": "10 GB"}, {"mountpoint": "/var/a"}]}]),
     "machine.disks[0]: partition for disk \"/dev/sdb\" is set to occupy full disk, but it's not the last partition in the list"),
    ("kubelet", V113, "worker", _set("machine.kubelet.extraConfig", {"staticPodPath": "/etc/pods"}),
     _set("machine.kubelet.extraConfig", {"maxPods": 50}),
     'machine.kubelet: kubelet configuration field "staticPodPath" can\'t be overridden'),
    ("install_extensions", V113, "worker",
     _set("machine.install.extensions", [{"image": "ghcr.io/siderolabs/gvisor:1"}, {"image": "ghcr.io/siderolabs/gvisor:1"}]),
     _set("machine.install.extensions", [{"image": "ghcr.io/siderolabs/gvisor:1"}]),
     'machine.install: duplicate system extension "ghcr.io/siderolabs/gvisor:1"'),
    ("node_labels", V113, "worker", _set("machine.nodeLabels", {"rack": "r 1"}), _set("machine.nodeLabels", {"rack": "r-1"}),
     "machine.nodeLabels: invalid machine node labels: label value 'r 1' is invalid"),
    ("node_labels", V114, "worker", _kind("KubeNodeConfig", taints={"dedicated": "infra:NoPlease"}),
     _kind("KubeNodeConfig", taints={"dedicated": "infra:NoSchedule"}),
     "KubeNodeConfig: invalid node taints: invalid taint effect: 'NoPlease'"),
    ("talos_api_access", V113, "worker", _set("machine.features.kubernetesTalosAPIAccess", {"enabled": True}),
     _set("machine.features.kubernetesTalosAPIAccess", {"enabled": False}),
     "machine.features.kubernetesTalosAPIAccess: feature Kubernetes Talos API Access can only be enabled on control plane machines"),
    ("persist", V113, "worker", _set("persist", False), _set("persist", True),
     "persist: .persist should be enabled"),
    ("registries_not_null", V113, "worker", _set("machine.registries", {"mirrors": {"docker.io": None}}),
     _set("machine.registries", {"mirrors": {"docker.io": {"endpoints": ["https://m.example"]}}}),
     'machine.registries: registries.mirrors["docker.io"] is null'),
    ("control_plane_endpoint", V113, "worker", _set("cluster.controlPlane.endpoint", "https://[fd00::1:6443"),
     _set("cluster.controlPlane.endpoint", "https://[fd00::1]:6443"),
     "cluster.controlPlane.endpoint: invalid controlplane endpoint"),
    ("dns_domain", V113, "worker", _set("cluster.network.dnsDomain", "bad domain"),
     _set("cluster.network.dnsDomain", "k8s.example.internal"),
     'cluster.network.dnsDomain: "bad domain" is not a valid DNS name'),
    ("etcd", V113, "worker", _set("cluster.etcd", {"advertisedSubnets": ["10.0.0.0/8"]}), _noop,
     "cluster.etcd: etcd config is only allowed on control plane machines"),
    ("inline_manifests", V113, "controlplane",
     _set("cluster.inlineManifests", [{"name": "a", "contents": "x"}, {"name": "a", "contents": "y"}]),
     _set("cluster.inlineManifests", [{"name": "a", "contents": "x"}, {"name": "b", "contents": "y"}]),
     'cluster.inlineManifests: inline manifest name "a" is duplicate'),
    ("external_cloud_provider", V113, "controlplane",
     _set("cluster.externalCloudProvider", {"enabled": False, "manifests": ["https://x/ccm.yaml"]}),
     _set("cluster.externalCloudProvider", {"enabled": True, "manifests": ["https://x/ccm.yaml"]}),
     "cluster.externalCloudProvider: external cloud provider is disabled, but manifests are provided"),
    ("discovery", V113, "worker", _set("cluster.discovery.registries.service", {"endpoint": "https://d.example/path"}),
     _set("cluster.discovery.registries.service", {"endpoint": "https://d.example/"}),
     "cluster.discovery: cluster discovery service path should be empty"),
    ("hostname_config", V113, "worker", _kind("HostnameConfig", hostname="n1"),
     _both(_kind("HostnameConfig", hostname="n1"), _kind("HostnameConfig", auto="off")),
     "HostnameConfig: 'auto' and 'hostname' cannot be set at the same time"),
    ("unattended_install", V114, "worker", _kind("UnattendedInstallConfig", provisioning={"wipe": False}),
     _kind("UnattendedInstallConfig", provisioning={"diskSelector": {"match": "disk.size > 10u * GB"}}),
     "UnattendedInstallConfig: provisioning.volumeSelector.match is required"),
    ("duplicate_documents", V114, "worker",
     lambda d: d.append({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}), _noop,
     "config: duplicate document: HostnameConfig/"),
    ("discovery_identity", V114, "worker", _drop_kind("DiscoveryIdentityConfig"), _both(_drop_kind("DiscoveryIdentityConfig"), _drop_kind("DiscoveryServiceConfig")),
     "config: cluster ID (.cluster.id or DiscoveryIdentityConfig) should be set when cluster discovery (DiscoveryServiceConfig) is enabled"),
    ("control_plane_only_documents", V114, "worker", _kind("KubeCoreDNSConfig", enabled=True), _noop,
     "config: the following document kinds are only allowed on control plane machines: [KubeCoreDNSConfig]"),
    ("etcd_encryption", V114, "controlplane", _drop_kind("KubeEtcdEncryptionConfig"), _noop,
     "config: etcd encryption config is required for control plane machines running kube-apiserver"),
]  # fmt: skip
UNTESTED_HERE = {"machine_required", "cluster_required"}  # checked in test_sections_required


def _base(bundle: SecretsBundle, contract: Any, role: str) -> Docs:
    cluster = ClusterSpec(
        "lab", "https://10.77.0.10:6443", "1.34.1", contract, bundle, install_disk="/dev/sda"
    )
    return generate_documents(cluster, MachineSpec("controlplane" if role == "controlplane" else "worker"))


def _text(bundle: SecretsBundle, contract: Any, role: str, mutation: Mutation) -> str:
    docs = copy.deepcopy(_base(bundle, contract, role))
    mutation(docs)
    return goyaml.dump_all(docs)


def test_every_rule_has_a_case() -> None:
    assert {rule.__name__ for rule in RULES} == {case[0] for case in CASES} | UNTESTED_HERE


@pytest.mark.parametrize(
    ("rule", "contract", "role", "bad", "good", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_rule_refuses_and_accepts(
    golden_bundle: SecretsBundle,
    tmp_path: Path,
    rule: str,
    contract: Any,
    role: str,
    bad: Mutation,
    good: Mutation,
    message: str,
) -> None:
    refused = _text(golden_bundle, contract, role, bad)
    errors = validate_config(refused, contract)
    assert any(error.startswith(message) for error in errors), (rule, errors)
    assert validate_config(_text(golden_bundle, contract, role, good), contract) == [], rule
    path = tmp_path / "config.yaml"
    path.write_text(refused)
    result = CliRunner().invoke(cli, ["cluster", "validate", str(path), "--talos-version", str(contract)])
    assert result.exit_code == 1
    assert f"{path}: {message}" in result.output


def test_sections_required() -> None:
    errors = validate_config("version: v1alpha1\ndebug: false\npersist: true\n", mode="cloud")
    assert "machine: machine instructions are required" in errors
    assert "cluster: cluster instructions are required" in errors


@pytest.mark.parametrize("machine_type", ["init", "controlplane"])
def test_init_is_a_control_plane_type(golden_bundle: SecretsBundle, machine_type: str) -> None:
    """Talos 1.13+ still parses "init" (machine.ParseType); the schema's enum omits it."""
    text = _text(golden_bundle, V113, "controlplane", _set("machine.type", machine_type))
    assert validate_config(text, V113) == []
    text = _text(golden_bundle, V114, "controlplane", _set("machine.type", machine_type))
    assert validate_config(text, V114) == []
