"""Machine configs for one machine of one cluster: the provisioner's entry point.

Pipeline (pure: no I/O, no clock):

1. :func:`provisioner.talos.multidoc.base_documents` produces exactly what
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
from provisioner.talos.documents import DEFAULT_KUBEPRISM_PORT, GenerateOptions, MachineType
from provisioner.talos.multidoc import base_documents
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
    discovery: bool = True
    kubeprism_port: int = DEFAULT_KUBEPRISM_PORT
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
        discovery=cluster.discovery,
        kubeprism_port=cluster.kubeprism_port,
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


def _legacy_network(machine: MachineSpec) -> dict[str, Any]:
    """Up to 1.11 a machine's network lives in ``machine.network`` (no network documents)."""
    network: dict[str, Any] = {}
    if machine.hostname:
        network["hostname"] = machine.hostname
    interfaces = []
    for link in machine.links:
        device: dict[str, Any] = {"interface": link.name}
        if link.addresses:
            device["addresses"] = list(link.addresses)
        if link.gateway:
            device["routes"] = [{"network": "0.0.0.0/0", "gateway": link.gateway}]
        if link.mtu:
            device["mtu"] = link.mtu
        interfaces.append(device)
    if interfaces:
        network["interfaces"] = interfaces
    if machine.nameservers:
        network["nameservers"] = list(machine.nameservers)
    return network


def _network_documents(machine: MachineSpec) -> list[dict[str, Any]]:
    """From 1.12 on: HostnameConfig, LinkConfig and ResolverConfig documents."""
    docs: list[dict[str, Any]] = []
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
    return docs


def machine_patch(
    machine: MachineSpec, contract: VersionContract, *, install_kernel_args: bool = False
) -> ConfigPatch | None:
    """The strategic-merge patch that carries a machine's own settings, if it has any.

    ``install_kernel_args``: the config's legacy install section carries extra kernel
    arguments.  Contracts 1.12 and 1.13 also write ``grubUseUKICmdline: true``, and Talos
    refuses the two together on metal ("install.extraKernelArgs and
    install.grubUseUKICmdline can't be used together", v1alpha1_validation.go), so the
    patch turns the UKI command line off: GRUB then builds the command line from Talos's
    defaults plus the extra arguments.
    """
    docs: list[dict[str, Any]] = []
    main: dict[str, Any] = {}
    if machine.cert_sans:
        main["certSANs"] = list(machine.cert_sans)
    if install_kernel_args and contract.grub_use_uki_cmdline_default and not contract.multidoc_kubernetes:
        main["install"] = {"grubUseUKICmdline": False}
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
    if contract.multidoc_network_config:
        docs.extend(_network_documents(machine))
    elif network := _legacy_network(machine):
        main["network"] = network
    if main:
        docs.insert(0, {"version": "v1alpha1", "machine": main})
    return ConfigPatch("strategic", documents=tuple(docs)) if docs else None


def generate_documents(cluster: ClusterSpec, machine: MachineSpec) -> list[dict[str, Any]]:
    """Every document of the machine's config, patched and in Go's field order."""
    options = _options(cluster, machine)
    docs = base_documents(options, machine.role)
    own = machine_patch(
        machine, cluster.contract, install_kernel_args=bool(options.install_extra_kernel_args)
    )
    patches = [*([own] if own else []), *cluster.patches, *machine.patches]
    if patches:
        docs = apply_patches(docs, patches)
    return [canonical_order(doc, cluster.contract) for doc in docs]


def generate_config(cluster: ClusterSpec, machine: MachineSpec) -> str:
    """The machine config as YAML text, encoded exactly as ``talosctl`` encodes it."""
    return goyaml.dump_all(generate_documents(cluster, machine))
