"""Machine configs for one machine of one cluster: the provisioner's entry point.

Pipeline (pure: no I/O, no clock):

1. :func:`provisioner.talos.documents.base_documents` produces exactly what
   ``talosctl gen config`` produces for the cluster-wide options plus the machine's
   install disk, sysctls and kernel arguments;
2. machine settings ``talosctl`` has no option for (hostname, static links, nameservers,
   labels, taints, extra cert SANs) are applied as a generated strategic-merge patch;
3. the cluster's patches, then the machine's patches, are applied;
4. every document is put in Go's field order and encoded like Go's YAML encoder.

With no machine settings and no patches the output is byte-identical to ``talosctl``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from provisioner.talos import goyaml
from provisioner.talos.contract import VersionContract
from provisioner.talos.documents import GenerateOptions, MachineType, base_documents
from provisioner.talos.patches import ConfigPatch, apply_patches
from provisioner.talos.schema import canonical_order
from provisioner.talos.secrets import SecretsBundle

__all__ = ["ClusterSpec", "LinkSpec", "MachineSpec", "generate_config", "generate_documents", "machine_patch"]

DEFAULT_DNS_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A statically addressed network link (Talos ``LinkConfig``)."""

    name: str
    addresses: tuple[str, ...] = ()
    gateway: str = ""
    mtu: int = 0


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Cluster-wide inputs, the equivalent of ``talosctl gen config`` flags and patches."""

    name: str
    endpoint: str
    kubernetes_version: str
    contract: VersionContract
    secrets: SecretsBundle
    dns_domain: str = DEFAULT_DNS_DOMAIN
    cni: Literal["flannel", "none", "custom"] = "flannel"
    cni_urls: tuple[str, ...] = ()
    allow_scheduling_on_control_planes: bool = False
    cert_sans: tuple[str, ...] = ()
    registry_mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    install_disk: str = ""
    install_image: str = ""
    extra_kernel_args: tuple[str, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    local_api_server_port: int = 0
    pod_subnets: tuple[str, ...] = ()
    service_subnets: tuple[str, ...] = ()
    patches: tuple[ConfigPatch, ...] = ()


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """One machine's role and settings; empty values fall back to the cluster's."""

    role: MachineType
    hostname: str = ""
    install_disk: str = ""
    install_image: str = ""
    links: tuple[LinkSpec, ...] = ()
    nameservers: tuple[str, ...] = ()
    cert_sans: tuple[str, ...] = ()
    node_labels: Mapping[str, str] = field(default_factory=dict)
    node_taints: Mapping[str, str] = field(default_factory=dict)
    sysctls: Mapping[str, str] = field(default_factory=dict)
    extra_kernel_args: tuple[str, ...] = ()
    patches: tuple[ConfigPatch, ...] = ()


def _options(cluster: ClusterSpec, machine: MachineSpec) -> GenerateOptions:
    if cluster.cni == "custom" and not cluster.cni_urls:
        msg = "a custom CNI needs at least one manifest URL"
        raise ValueError(msg)
    return GenerateOptions(
        cluster_name=cluster.name,
        endpoint=cluster.endpoint,
        kubernetes_version=cluster.kubernetes_version,
        contract=cluster.contract,
        secrets=cluster.secrets,
        dns_domain=cluster.dns_domain,
        install_disk=machine.install_disk or cluster.install_disk,
        install_image=machine.install_image or cluster.install_image,
        install_extra_kernel_args=(*cluster.extra_kernel_args, *machine.extra_kernel_args),
        additional_sans=cluster.cert_sans,
        sysctls={**cluster.sysctls, **machine.sysctls},
        registry_mirrors=cluster.registry_mirrors,
        cni=cluster.cni,
        cni_urls=cluster.cni_urls,
        allow_scheduling_on_control_planes=cluster.allow_scheduling_on_control_planes,
        local_api_server_port=cluster.local_api_server_port,
        pod_subnets=cluster.pod_subnets,
        service_subnets=cluster.service_subnets,
    )


def _link_document(link: LinkSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": link.name, "up": True}
    if link.mtu:
        doc["mtu"] = link.mtu
    if link.addresses:
        doc["addresses"] = [{"address": address} for address in link.addresses]
    if link.gateway:
        # A route without a destination is the default route.
        doc["routes"] = [{"gateway": link.gateway}]
    return doc


def machine_patch(machine: MachineSpec, contract: VersionContract) -> ConfigPatch | None:
    """The strategic-merge patch that carries a machine's own settings, if it has any."""
    docs: list[dict[str, Any]] = []
    main: dict[str, Any] = {}
    if machine.cert_sans:
        main["certSANs"] = list(machine.cert_sans)
    if contract.multidoc_kubernetes:
        node: dict[str, Any] = {}
        if machine.node_labels:
            node["labels"] = dict(machine.node_labels)
        if machine.node_taints:
            node["taints"] = dict(machine.node_taints)
        if node:
            docs.append({"apiVersion": "v1alpha1", "kind": "KubeNodeConfig", **node})
    else:
        if machine.node_labels:
            main["nodeLabels"] = dict(machine.node_labels)
        if machine.node_taints:
            main["nodeTaints"] = dict(machine.node_taints)
    if main:
        docs.insert(0, {"version": "v1alpha1", "machine": main})
    if machine.hostname:
        # A static hostname replaces the generated "auto: stable" (Talos forbids both).
        docs.append(
            {
                "apiVersion": "v1alpha1",
                "kind": "HostnameConfig",
                "auto": {"$patch": "delete"},
                "hostname": machine.hostname,
            }
        )
    docs.extend(_link_document(link) for link in machine.links)
    if machine.nameservers:
        nameservers = [{"address": address} for address in machine.nameservers]
        docs.append({"apiVersion": "v1alpha1", "kind": "ResolverConfig", "nameservers": nameservers})
    return ConfigPatch("strategic", documents=tuple(docs)) if docs else None


def generate_documents(cluster: ClusterSpec, machine: MachineSpec) -> list[dict[str, Any]]:
    """Every document of the machine's config, patched and in Go's field order."""
    docs = base_documents(_options(cluster, machine), machine.role)
    own = machine_patch(machine, cluster.contract)
    patches = [*([own] if own else []), *cluster.patches, *machine.patches]
    if patches:
        docs = apply_patches(docs, patches)
    return [canonical_order(doc, cluster.contract) for doc in docs]


def generate_config(cluster: ClusterSpec, machine: MachineSpec) -> str:
    """The machine config as YAML text, encoded exactly as ``talosctl`` encodes it."""
    return goyaml.dump_all(generate_documents(cluster, machine))
